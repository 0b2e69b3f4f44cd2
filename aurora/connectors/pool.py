"""Pooling after the projector (PLLaVA): project every frame's tokens, then average-pool the video's
(T, h, w) token grid to `pooling_shape` with `AdaptiveAvgPool3d`; the result is one block of
t'·h'·w' tokens for the whole video (one placeholder per video). A video shorter than `num_frames`
(an image: one frame) is filled by repeating its frames in order, as PLLaVA does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from aurora.connectors.projector import MLPProjector
from aurora.errors import ConfigError


class PooledConnector(nn.Module):
    needs_grid = True  # merged tokens are put back on the patch grid before pooling (VideoLLM.encode)
    def __init__(self, projector: MLPProjector, pooling_shape: tuple[int, int, int], num_frames: int | None = None):
        super().__init__()
        self.num_frames = num_frames
        if len(pooling_shape) != 3 or min(pooling_shape) < 1:
            raise ConfigError(f"pooling_shape must be 3 positive sizes (frames, height, width), got {pooling_shape}")
        self.projector = projector
        self.pooling_shape = tuple(int(x) for x in pooling_shape)
        self.pool = nn.AdaptiveAvgPool3d(self.pooling_shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(T, n, C) frame features on a square grid -> (1, t'·h'·w', D)."""
        if self.num_frames and features.shape[0] < self.num_frames:  # [a, b, c, a, b, c, ...]
            features = features[torch.arange(self.num_frames, device=features.device) % features.shape[0]]
        frames, tokens, _ = features.shape
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ConfigError(f"pooling needs each frame's square token grid, got {tokens} tokens")
        t, h, w = self.pooling_shape
        if t > frames or h > side or w > side:
            raise ConfigError(f"pooling_shape {self.pooling_shape} is larger than the {frames}x{side}x{side} token grid")
        x = self.projector(features)  # (T, n, D)
        x = x.permute(2, 0, 1).reshape(1, -1, frames, side, side)  # (1, D, T, h, w)
        return self.pool(x).flatten(2).transpose(1, 2)  # (1, t'·h'·w', D)

    def to_config(self) -> dict:
        return {"model_type": "pool", "projector": self.projector.to_config(), "pooling_shape": list(self.pooling_shape),
                "num_frames": self.num_frames}

    @classmethod
    def from_config(cls, config: dict) -> "PooledConnector":
        return cls(MLPProjector.from_config(config["projector"]), tuple(config["pooling_shape"]), config.get("num_frames"))
