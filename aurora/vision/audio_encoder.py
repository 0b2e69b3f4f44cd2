"""ImageBind's audio encoder (ImageBind-huge: 12 blocks of width 768, 12 heads), which Video-LLaMA's
audio branch reads: a (1, 128, 204) filter-bank "image" per clip -> one 1024-d embedding per clip.

Written here because transformers has no ImageBind; parameter names follow ImageBind's
(`modality_preprocessors.audio...`, `modality_trunks.audio.blocks.N...`, `modality_heads.audio...`,
`modality_postprocessors.audio...`) so its `imagebind_huge.pth` loads with only the other
modalities' keys left over. Per clip:

    16x16 convolution, stride 10, no bias -> (12 x 19 patches) -> LayerNorm -> CLS + learned positions
    -> 12 pre-norm blocks (`nn.MultiheadAttention` with a learned extra key/value, GELU MLP x4)
    -> LayerNorm (eps 1e-6) -> CLS -> Linear(768, 1024, no bias) -> L2 normalise -> x 20

(ImageBind's audio postprocessor: a fixed logit scale of 20; Video-LLaMA takes this scaled embedding.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AudioEncoderConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    out_features: int = 1024
    mel_bins: int = 128
    frames: int = 204
    kernel: int = 16
    stride: int = 10
    logit_scale: float = 20.0

    @property
    def grid(self) -> tuple[int, int]:
        return (self.mel_bins - self.kernel) // self.stride + 1, (self.frames - self.kernel) // self.stride + 1


class _Stem(nn.Module):
    def __init__(self, c: AudioEncoderConfig):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(1, c.width, kernel_size=c.kernel, stride=c.stride, bias=False))
        self.norm_layer = nn.LayerNorm(c.width)


class _Positions(nn.Module):
    def __init__(self, tokens: int, width: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))


class _Preprocessor(nn.Module):
    def __init__(self, c: AudioEncoderConfig):
        super().__init__()
        rows, cols = c.grid
        self.rgbt_stem = _Stem(c)
        self.pos_embedding_helper = _Positions(1 + rows * cols, c.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, mel, frames) -> (N, 1 + P, C) tokens."""
        patches = self.rgbt_stem.proj(x).flatten(2).transpose(1, 2)  # (N, P, C)
        patches = self.rgbt_stem.norm_layer(patches)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), patches], dim=1)
        return tokens + self.pos_embedding_helper.pos_embed


class _Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, c: AudioEncoderConfig):
        super().__init__()
        self.attn = nn.MultiheadAttention(c.width, c.heads, bias=True, add_bias_kv=True, batch_first=True)
        self.norm_1, self.norm_2 = nn.LayerNorm(c.width, eps=1e-6), nn.LayerNorm(c.width, eps=1e-6)
        self.mlp = _Mlp(c.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class _Trunk(nn.Module):
    def __init__(self, c: AudioEncoderConfig):
        super().__init__()
        self.blocks = nn.Sequential(*[_Block(c) for _ in range(c.layers)])


class _Scale(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(float(value)).log())


class AudioEncoder(nn.Module):
    """(N, 1, 128, 204) normalised filter banks -> (N, out_features) clip embeddings."""

    def __init__(self, config: AudioEncoderConfig = AudioEncoderConfig()):
        super().__init__()
        self.config = config
        self.modality_preprocessors = nn.ModuleDict({"audio": _Preprocessor(config)})
        self.modality_trunks = nn.ModuleDict({"audio": _Trunk(config)})
        # ImageBind's head: LayerNorm, SelectElement(0) (no weights), Linear
        self.modality_heads = nn.ModuleDict({"audio": nn.ModuleDict({
            "0": nn.LayerNorm(config.width, eps=1e-6), "2": nn.Linear(config.width, config.out_features, bias=False)})})
        self.modality_postprocessors = nn.ModuleDict({"audio": nn.ModuleDict({"1": _Scale(config.logit_scale)})})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.modality_preprocessors["audio"](x.to(self.modality_preprocessors["audio"].cls_token.dtype))
        tokens = self.modality_trunks["audio"].blocks(tokens)  # (N, 1 + P, C)
        head = self.modality_heads["audio"]
        embedding = head["2"](head["0"](tokens)[:, 0])  # the CLS token, projected
        scale = self.modality_postprocessors["audio"]["1"].log_logit_scale.exp().clamp(max=100)
        return F.normalize(embedding, dim=-1) * scale
