"""The vision section of a model's preset: what frames look like to the tower (resolution,
normalisation, resizing, temporal input channels) and which of its features are taken."""

from __future__ import annotations

from dataclasses import dataclass

from aurora.errors import ConfigError
from aurora.vision.preprocess import CLIP_MEAN, CLIP_STD, RESIZE_MODES, TEMPORAL_INPUTS, FrameTransform
from aurora.vision.stem import VISION_STEMS
from aurora.vision.tower import POSITION_INTERPOLATIONS


@dataclass
class VisionSettings:
    image_size: int = 378
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    resize: str = "shortest_edge_crop"
    temporal_input: str = "none"  # "difference" (6 channels in) or "motion" (8): see FrameTransform
    vision_stem: str = "patch"  # the tower's patchify convolution, or "conv" / "cnn": aurora.vision.stem
    feature_layer: int = -2  # hidden state passed on (transformers' indexing; AuroraCap: -2)
    position_interpolation: str = "auroracap"

    def __post_init__(self):
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        checks = [
            (self.image_size > 0, f"image_size must be positive, got {self.image_size}"),
            (self.resize in RESIZE_MODES, f"resize must be one of {RESIZE_MODES}"),
            (self.temporal_input in TEMPORAL_INPUTS, f"temporal_input must be one of {TEMPORAL_INPUTS}"),
            (self.vision_stem in VISION_STEMS, f"vision_stem must be one of {VISION_STEMS}"),
            (self.position_interpolation in POSITION_INTERPOLATIONS, "unknown position_interpolation"),
            (len(self.image_mean) == 3 and len(self.image_std) == 3, "image_mean/std need 3 values"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid preset: {message}")

    def transform(self) -> FrameTransform:
        return FrameTransform(self.image_size, self.image_mean, self.image_std, self.resize, self.temporal_input)
