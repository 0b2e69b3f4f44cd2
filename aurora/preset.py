"""A model's preset: the preprocessing and defaults that travel with its checkpoint.

Frame sampling, resolution, normalisation, token merging defaults and the prompt template are
stored next to the weights (`aurora_preset.json`) so the CLI, server, GUI and evaluation cannot
disagree about how a model is fed. Checkpoints without the file get their family's defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from aurora.errors import ConfigError
from aurora.prompts import TEMPLATES
from aurora.vision.merge import SCHEDULES
from aurora.vision.preprocess import CLIP_MEAN, CLIP_STD, RESIZE_MODES, TEMPORAL_INPUTS
from aurora.vision.stem import VISION_STEMS
from aurora.vision.tower import POSITION_INTERPOLATIONS

PRESET_FILE = "aurora_preset.json"
SAMPLINGS = ("uniform", "middle")


@dataclass
class Preset:
    family: str = "auroracap"
    image_size: int = 378
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    resize: str = "shortest_edge_crop"
    temporal_input: str = "none"  # "difference" (6 channels in) or "motion" (8): see FrameTransform
    vision_stem: str = "patch"  # the tower's patchify convolution, or "conv" / "cnn": aurora.vision.stem
    num_frames: int = 8
    sampling: str = "uniform"
    token_kept_ratio: float = 0.8
    feature_layer: int = -2
    proportional_attention: bool = False
    merge_schedule: str = "constant"  # AuroraCap's; "decreasing" front-loads merging (faster tower)
    position_interpolation: str = "auroracap"
    template: str = "vicuna"
    default_prompt: str = "Describe the video in detail."
    max_new_tokens: int = 2048

    def __post_init__(self):
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        checks = [
            (self.image_size > 0, f"image_size must be positive, got {self.image_size}"),
            (self.num_frames >= 1, f"num_frames must be >= 1, got {self.num_frames}"),
            (0 < self.token_kept_ratio <= 1, f"token_kept_ratio must be in (0, 1], got {self.token_kept_ratio}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.resize in RESIZE_MODES, f"resize must be one of {RESIZE_MODES}"),
            (self.temporal_input in TEMPORAL_INPUTS, f"temporal_input must be one of {TEMPORAL_INPUTS}"),
            (self.vision_stem in VISION_STEMS, f"vision_stem must be one of {VISION_STEMS}"),
            (self.sampling in SAMPLINGS, f"sampling must be one of {SAMPLINGS}"),
            (self.template in TEMPLATES, f"template must be one of {tuple(TEMPLATES)}"),
            (self.position_interpolation in POSITION_INTERPOLATIONS, "unknown position_interpolation"),
            (self.merge_schedule in SCHEDULES, f"merge_schedule must be one of {SCHEDULES}"),
            (len(self.image_mean) == 3 and len(self.image_std) == 3, "image_mean/std need 3 values"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid preset: {message}")

    def save(self, directory: str | Path) -> None:
        Path(directory, PRESET_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, **defaults) -> "Preset":
        """The preset stored in `directory`, else one built from `defaults` (family defaults)."""
        path = Path(directory, PRESET_FILE)
        if not path.is_file():
            return cls(**defaults)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e}); fix or delete it") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path} has unknown fields {unknown}; remove them")
        return cls(**{**defaults, **data})
