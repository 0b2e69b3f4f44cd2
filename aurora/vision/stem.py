"""Convolutional stems for from-scratch towers: they replace the ViT's patchify convolution.

A patchify stem (one k x k convolution with stride k) makes small ViTs trained from scratch slow to
learn shape (Xiao et al., "Early convolutions help transformers see better", 2021);
`benchmarks/tower_shape_probe.py` measures it on synthetic clips. Both stems here reach the same
token grid as the patchify one, so everything after the patch embedding (positions, merging,
layers) is unchanged. Hand-written because transformers' CLIP/SigLIP have no such option.
"""

from __future__ import annotations

import math

from torch import nn

from aurora.errors import ConfigError

def _halvings(patch_size: int, stem: str) -> int:
    """log2(patch_size): how many times a stem halves the resolution to reach the patch grid."""
    steps = int(math.log2(patch_size))
    if patch_size < 2 or 2**steps != patch_size:
        raise ConfigError(f"a {stem} stem needs a power-of-two patch_size >= 2, got {patch_size}")
    return steps


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    """3x3 convolution, batch norm, GELU."""
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.GELU()]


class ConvStem(nn.Sequential):
    """log2(patch_size) stride-2 3x3 convolutions (batch norm, GELU), widths doubling up to the
    tower's, then a 1x1 projection."""

    def __init__(self, in_channels: int, width: int, patch_size: int):
        steps = _halvings(patch_size, "conv")
        layers, channels = [], in_channels
        for i in range(steps):
            out = max(width // 2 ** (steps - 1 - i), 16)  # widths double up to the tower's width
            layers += _block(channels, out, 2)
            channels = out
        super().__init__(*layers, nn.Conv2d(channels, width, 1))


class CNNStem(nn.Sequential):
    """A small CNN: a 3x3 convolution at full resolution, then (stride 2, stride 1) pairs of 3x3
    convolutions that double the width, each with batch norm and GELU, a 2x2 max pool to the patch
    grid and a 1x1 projection to the tower's width.

    Every pixel position gets the same filters before anything is pooled, which is what lets it learn
    shape several times faster than `ConvStem` (benchmarks/tower_shape_probe.py); it costs about as
    much as the rest of a 4-layer, 128-wide ViT on 8x8 tokens.
    """

    def __init__(self, in_channels: int, width: int, patch_size: int):
        steps = _halvings(patch_size, "cnn")
        channels = max(width // 2**steps, 16)
        layers = _block(in_channels, channels, 1)
        for _ in range(steps - 1):
            layers += _block(channels, 2 * channels, 2) + _block(2 * channels, 2 * channels, 1)
            channels *= 2
        super().__init__(*layers, nn.MaxPool2d(2), nn.Conv2d(channels, width, 1))


STEMS = {"conv": ConvStem, "cnn": CNNStem}
VISION_STEMS = ("patch", *STEMS)  # "patch": the model's own patchify convolution


def install_stem(vision_model: nn.Module, stem: str) -> nn.Module:
    """Put the named stem into a transformers CLIP/SigLIP vision model (in place; returns it)."""
    if stem not in VISION_STEMS:
        raise ConfigError(f"vision_stem must be one of {VISION_STEMS}, got {stem!r}")
    if stem in STEMS:
        config = vision_model.config
        vision_model.embeddings.patch_embedding = STEMS[stem](config.num_channels, config.hidden_size, config.patch_size)
    return vision_model
