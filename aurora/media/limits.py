"""Limits on what a media file may declare, and the decode size that bounds memory.

A file's header says how big its frames are before anything is decoded (a 48-byte GIF can
declare a 16000x16000 screen, an 86-byte PNG a 6000x1 strip). Decoders allocate what the header
says, so the declared size is checked first: at most ``max_pixels`` per frame and an aspect
ratio of at most ``max_aspect``. Both can be raised with environment variables, which every
interface (CLI, server, evaluation, training) reads:

    AURORA_MAX_PIXELS   pixels per frame (default 40,000,000: 8K video and 36 MP photos fit)
    AURORA_MAX_ASPECT   longer side / shorter side (default 32)

JPEGs are checked at the size they are decoded at (``draft`` decodes at 1/2, 1/4 or 1/8 scale).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from aurora.errors import ConfigError, MediaError

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_ASPECT = 32.0


@dataclass(frozen=True)
class MediaLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT

    @classmethod
    def from_env(cls) -> "MediaLimits":
        return cls(
            max_pixels=int(_env_number("AURORA_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
            max_aspect=_env_number("AURORA_MAX_ASPECT", DEFAULT_MAX_ASPECT),
        )

    def check(self, path: str, width: int, height: int) -> None:
        """Raise MediaError when a frame of ``width`` x ``height`` is over a limit."""
        if width <= 0 or height <= 0:
            raise MediaError(
                f"cannot decode {path!r}: it declares a {width}x{height} frame; "
                f"the file is corrupt, re-encode or re-export it"
            )
        pixels = width * height
        if pixels > self.max_pixels:
            raise MediaError(
                f"cannot load {path!r}: it declares {width}x{height} frames "
                f"({pixels / 1e6:.1f} megapixels), over the limit of {self.max_pixels / 1e6:g} "
                f"megapixels; downscale it, or raise the limit with AURORA_MAX_PIXELS={pixels}"
            )
        aspect = max(width, height) / min(width, height)
        if aspect > self.max_aspect:
            raise MediaError(
                f"cannot load {path!r}: its {width}x{height} frames have an aspect ratio of "
                f"{aspect:.0f}:1, over the limit of {self.max_aspect:g}:1; crop it, or raise "
                f"the limit with AURORA_MAX_ASPECT={math.ceil(aspect)}"
            )


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 1:
        raise ConfigError(f"{name} must be a number >= 1, got {raw!r}; unset it for the default")
    return value


def check_size(size: int | None) -> None:
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise ConfigError(f"size must be an integer >= 1 (pixels) or None, got {size!r}")


def decode_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """The (width, height) to decode a ``width`` x ``height`` frame at: scaled down (never up)
    so the shorter side is ``size``, the longer side as CLIP's resize computes it
    (``int(size * long / short)``), so a shortest-edge transform to ``size`` has nothing left to
    resize. ``size`` None keeps the frame's own size."""
    short, long = min(width, height), max(width, height)
    if size is None or short <= size:
        return width, height
    long_new = max(size, int(size * long / short))
    return (size, long_new) if width <= height else (long_new, size)
