"""The media section of a model's preset: how many frames, how they are chosen, and whether the
audio track is read. Owned (and validated) here because `aurora.media` is what follows it."""

from __future__ import annotations

from dataclasses import dataclass

from aurora.errors import ConfigError

SAMPLINGS = ("uniform", "middle", "stride")  # AuroraCap's linspace, PLLaVA/MVBench's segment middles, Video-LLaMA's arange


@dataclass
class MediaSettings:
    num_frames: int = 8
    sampling: str = "uniform"
    audio: bool = False  # read the audio track too (families with an audio branch)

    def __post_init__(self):
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ConfigError(f"invalid preset: num_frames must be >= 1, got {self.num_frames}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"invalid preset: sampling must be one of {SAMPLINGS}")
