"""transformers' image-processor math for video frames, without torchvision: what a checkpoint's
`preprocessor_config.json` / `video_preprocessor_config.json` says (resize to a fixed size or by the
shortest edge, centre crop, rescale, normalise), done with Pillow and numpy per frame.

Equal per frame to `CLIPImageProcessorPil` / `SiglipImageProcessorPil` with the same settings
(tested). Every transformers *video* processor needs torchvision; one line of difference: those
resize with torchvision's bicubic, this with Pillow's (as the image processors do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from aurora.errors import ConfigError
from aurora.vision.preprocess import CLIP_MEAN, CLIP_STD

RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC, 4: Image.BOX, 5: Image.HAMMING}


@dataclass(frozen=True)
class FrameProcessor:
    """size: (height, width) to resize to, or an int, the shortest edge (the long side scaled as
    transformers does, truncated); crop: (height, width) of a centre crop, or None."""

    size: tuple[int, int] | int
    crop: tuple[int, int] | None = None
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    rescale: float = 1 / 255
    resample: int = 3  # PIL's bicubic, the processors' default

    @classmethod
    def from_config(cls, config: dict, default: "FrameProcessor") -> "FrameProcessor":
        """From a processor config's keys (size, crop_size, do_center_crop, image_mean, ...)."""
        size, crop = default.size, default.crop
        if config.get("do_resize", True) and isinstance(config.get("size"), dict):
            given = config["size"]
            if "shortest_edge" in given:
                size = given["shortest_edge"]
            elif {"height", "width"} <= set(given):
                size = (given["height"], given["width"])
            else:
                raise ConfigError(f"a processor size of {given} is not one Aurora reads: give shortest_edge or height and width")
        if "do_center_crop" in config or "crop_size" in config:
            given = config.get("crop_size") if config.get("do_center_crop", True) else None
            crop = (given["height"], given["width"]) if isinstance(given, dict) else None
        return cls(size=size, crop=crop, mean=tuple(config.get("image_mean", default.mean)),
                   std=tuple(config.get("image_std", default.std)),
                   rescale=config.get("rescale_factor", default.rescale) if config.get("do_rescale", True) else 1.0,
                   resample=int(config.get("resample", default.resample)))

    def to_config(self) -> dict:
        size = {"shortest_edge": self.size} if isinstance(self.size, int) else {"height": self.size[0], "width": self.size[1]}
        crop = {"crop_size": {"height": self.crop[0], "width": self.crop[1]}, "do_center_crop": True} if self.crop else {}
        return {"size": size, **crop, "image_mean": list(self.mean), "image_std": list(self.std),
                "rescale_factor": self.rescale, "resample": self.resample}

    def target(self, height: int, width: int) -> tuple[int, int]:
        if not isinstance(self.size, int):
            return tuple(self.size)
        short, long = (height, width) if height <= width else (width, height)
        new_long = int(self.size * long / short)
        return (self.size, new_long) if height <= width else (new_long, self.size)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB -> (T, 3, h, w) float32."""
        h, w = self.target(*frames.shape[1:3])
        out = []
        for frame in frames:
            image = Image.fromarray(frame)
            if image.size != (w, h):
                image = image.resize((w, h), RESAMPLE[self.resample])
            x = np.asarray(image)
            if self.crop:  # transformers' centre crop: the top-left corner rounded down
                top, left = (x.shape[0] - self.crop[0]) // 2, (x.shape[1] - self.crop[1]) // 2
                x = x[top:top + self.crop[0], left:left + self.crop[1]]
            out.append(x)
        x = np.stack(out).astype(np.float32) * np.float32(self.rescale)
        x = (x - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
