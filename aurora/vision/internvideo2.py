"""An InternVideo2-shaped video encoder (OpenGVLab's InternVideo2 ViT, as Apollo's video tower uses
it), written here so its checkpoints load without their remote code.

A clip (B, C, T, H, W) is cut into tubelets by a 3-D convolution (`patch_embed.proj`), a CLS token
and a learned position table (`pos_embed`, (1, 1 + T' h w, D)) are added, and pre-norm blocks run:
x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))), with RMSNorm everywhere, RMS-normalised
queries and keys (over the full width, before the heads split) and LayerScale (`gamma`). Like the
published `forward(..., x_vis_return_idx, x_vis_only=True)`, it returns the hidden states after
the selected block with no final norm; Apollo then drops CLS.

Parameter names follow the published model (`patch_embed.proj`, `cls_token`, `pos_embed`,
`img_pos_embed`, `blocks.N.{norm1, attn.qkv, attn.q_norm, attn.k_norm, attn.proj, ls1.gamma, norm2,
mlp.fc1, mlp.fc2, ls2.gamma}`), confirmed against OpenGVLab's InternVideo2 code. The config keys
`img_size`, `patch_size`, `num_frames`, `tubelet_size` and `d_model` are those Apollo's tower reads;
the others (`depth`, `num_heads`, `mlp_ratio`, `qkv_bias`, `qk_normalization`, `init_values`,
`sep_image_video_pos_embed`) are InternVideo2's constructor arguments, their defaults the 1B model's —
how the mirrors' config.json spells them could not be confirmed (their remote code is not public).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from aurora.errors import ConfigError

# weights the full InternVideo2 checkpoint holds for its CLIP-distillation heads; x_vis_only never runs them
UNUSED_PREFIXES = ("clip_projector.", "clip_decoder.", "final_clip_decoder.", "clip_pos_embed", "clip_img_pos_embed")


@dataclass
class InternVideo2Config:
    img_size: int = 224
    patch_size: int = 14
    num_frames: int = 4  # frames a clip has (the position table's time axis x tubelet_size)
    tubelet_size: int = 1
    d_model: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 48 / 11
    qkv_bias: bool = False
    qk_normalization: bool = True
    init_values: float | None = 1e-5  # LayerScale; None or 0: no LayerScale
    sep_image_video_pos_embed: bool = True  # an extra `img_pos_embed` (for single images; unused here)
    in_chans: int = 3
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.img_size % self.patch_size or self.num_frames % self.tubelet_size or self.d_model % self.num_heads:
            raise ConfigError(f"InternVideo2 config does not tile: img_size {self.img_size} / patch {self.patch_size}, "
                              f"num_frames {self.num_frames} / tubelet {self.tubelet_size}, d_model {self.d_model} / heads {self.num_heads}")

    @classmethod
    def from_dict(cls, config: dict) -> "InternVideo2Config":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in known})

    def to_dict(self) -> dict:
        return {"model_type": "internvideo2", **asdict(self)}

    @property
    def grid(self) -> tuple[int, int, int]:
        """(T', h, w) tokens per clip."""
        side = self.img_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, config: InternVideo2Config):
        super().__init__()
        dim = config.d_model
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        norm = (lambda: nn.RMSNorm(dim, eps=config.norm_eps)) if config.qk_normalization else nn.Identity
        self.q_norm, self.k_norm = norm(), norm()

    def forward(self, x):  # (B, N, D)
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, d).unbind(2)  # each (B, N, D)
        q, k = self.q_norm(q), self.k_norm(k)  # over the full width, before the heads split
        q, k, v = (t.view(b, n, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, nh, N, hs)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config: InternVideo2Config):
        super().__init__()
        dim = config.d_model
        self.norm1 = nn.RMSNorm(dim, eps=config.norm_eps)
        self.attn = Attention(config)
        scale = (lambda: LayerScale(dim, config.init_values)) if config.init_values else nn.Identity
        self.ls1 = scale()
        self.norm2 = nn.RMSNorm(dim, eps=config.norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.ls2 = scale()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, config: InternVideo2Config):
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.in_chans, config.d_model, kernel_size=kernel, stride=kernel)

    def forward(self, video):  # (B, C, T, H, W) -> (B, T' h w, D), time-major then raster order
        return self.proj(video).flatten(2).transpose(1, 2)


class InternVideo2(nn.Module):
    """The encoder; `forward(video, select_layer)` returns (B, 1 + T' h w, D) with CLS first."""

    def __init__(self, config: InternVideo2Config):
        super().__init__()
        self.config = config
        t, h, w = config.grid
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + t * h * w, config.d_model))
        if config.sep_image_video_pos_embed:
            self.img_pos_embed = nn.Parameter(torch.zeros(1, 1 + h * w, config.d_model))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))

    def blocks_to_run(self, select_layer: int) -> int:
        """InternVideo2 stops after block `depth + x_vis_return_idx`; a non-negative index never
        matches, so every block runs (the published loop's behaviour)."""
        depth = len(self.blocks)
        return depth + select_layer + 1 if select_layer < 0 else depth

    def forward(self, video: torch.Tensor, select_layer: int = -1) -> torch.Tensor:
        frames = video.shape[2]
        if frames != self.config.num_frames:  # Apollo repeats or strides frames to fit; not implemented here
            raise ConfigError(f"the InternVideo2 tower takes clips of {self.config.num_frames} frames, got {frames}: "
                              "set frames_per_clip to its num_frames")
        x = self.patch_embed(video.to(self.patch_embed.proj.weight.dtype))  # (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks[: self.blocks_to_run(select_layer)]:
            x = block(x)
        return x

    def load_published(self, state: dict, where) -> None:
        """Strict load of a published state dict; only the CLIP-distillation heads may be extra. Keys
        under one wrapper prefix (e.g. "vision_encoder.", as InternVideo2's own checkpoints nest
        them) are read from under it."""
        from aurora.models.weights import load_strict

        anchor = "patch_embed.proj.weight"
        prefix = next((k[: -len(anchor)] for k in state if k.endswith(anchor)), "")
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        load_strict(self, {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}, where)
