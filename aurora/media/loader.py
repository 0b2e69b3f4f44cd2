"""``load_visual``: one entry point that loads a video or an image by its extension."""

from __future__ import annotations

import os

from aurora.errors import ConfigError, MediaError
from aurora.media._checks import check_file, check_sampling
from aurora.media.audio import add_audio
from aurora.media.clips import sample_clips
from aurora.media.frames import Frames
from aurora.media.image import load_image
from aurora.media.video import load_video

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# Named in the error so an audio file gets "no video stream", not "unsupported".
_AUDIO_EXTENSIONS = (".m4a", ".mp3", ".wav", ".aac", ".flac", ".ogg", ".opus")


def load_visual(
    path: str | os.PathLike,
    num_frames: int | None = 8,
    fps: float | None = None,
    sampling: str = "uniform",
    size: int | None = None,
    audio: bool = False,
) -> Frames:
    """Load a video (sampled as ``load_video`` does) or an image (one frame).

    The extension decides, case-insensitively; the frame options are checked for
    images too, so a bad value fails the same way whatever the input. ``size`` (the
    model's input size) scales frames down while decoding so the shorter side is ``size``.
    ``audio=True`` also fills ``Frames.audio`` (16 kHz mono, ``add_audio``); it stays None for a
    silent video or an image.
    """
    check_sampling(num_frames, fps, sampling)
    if not isinstance(audio, bool):
        raise ConfigError(f"audio must be True or False, got {audio!r}")
    path = check_visual(path)
    if path.lower().endswith(VIDEO_EXTENSIONS):
        frames = load_video(path, num_frames=num_frames, fps=fps, sampling=sampling, size=size)
    else:
        frames = load_image(path, size=size)
    return add_audio(frames) if audio else frames


def check_visual(path: str | os.PathLike) -> str:
    """Cheap checks before any decoding: a readable file with a supported extension."""
    path = check_file(path)
    extension = os.path.splitext(path)[1].lower()
    if extension in VIDEO_EXTENSIONS or extension in IMAGE_EXTENSIONS:
        return path
    if extension in _AUDIO_EXTENSIONS:
        raise MediaError(
            f"cannot load {path!r}: it is an audio file with no video stream; "
            f"pass a video ({' '.join(VIDEO_EXTENSIONS)}) "
            f"or an image ({' '.join(IMAGE_EXTENSIONS)})"
        )
    raise MediaError(
        f"cannot load {path!r}: unsupported extension {extension or '(none)'!r}; "
        f"supported videos: {' '.join(VIDEO_EXTENSIONS)}; images: {' '.join(IMAGE_EXTENSIONS)}"
    )


def load_clips(
    path: str | os.PathLike,
    clip_duration: float,
    frames_per_clip: int,
    tokens_per_clip: int,
    model_max_length: int,
    clip_sampling_ratio: float,
    size: int | None = None,
) -> Frames:
    """A video read as clips (Apollo's rule, ``aurora.media.clips``): ``frames_per_clip`` frames per
    clip, as many clips as fit ``model_max_length`` at ``tokens_per_clip`` tokens each. The result's
    ``clips`` holds each clip's (start, end) seconds; clip k is frames k*frames_per_clip onward."""
    path = check_visual(path)
    if not path.lower().endswith(VIDEO_EXTENSIONS):
        raise ConfigError(f"{path!r} is an image: clip sampling (Apollo) takes a video")
    ranges: list[tuple[float, float]] = []

    def choose(total: int, fps: float | None) -> list[int]:
        clips, times = sample_clips(total, fps, clip_duration, frames_per_clip, tokens_per_clip,
                                    model_max_length, clip_sampling_ratio)
        ranges.extend(times)
        return [i for clip in clips for i in clip]

    frames = load_video(path, num_frames=1, choose=choose, size=size)  # `choose` names the frames
    frames.clips = ranges
    return frames
