"""Loading a still image (PNG, JPEG, WebP) as a one-frame ``Frames``."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from aurora.errors import MediaError
from aurora.media._checks import check_file, one_line
from aurora.media.frames import Frames

# 16/32-bit greyscale modes that Image.convert("RGB") would clip instead of scale.
_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB. Alpha is dropped (as LLaVA-style loaders do)."""
    if image.mode in _WIDE_GREY_MODES:
        grey = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if grey.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(grey * (255.0 / peak), 0, 255).round().astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # palette transparency needs RGBA first (PIL warns otherwise)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_image(path: str | os.PathLike) -> Frames:
    """Load an image as one upright RGB frame: ``array`` is (1, H, W, 3) uint8.

    EXIF orientation is applied. Animated images give their first frame.
    """
    path = check_file(path)
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is not actionable here; errors still raise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgb = _to_rgb(upright)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MediaError(
            f"cannot decode {path!r}: not an image file or it is corrupt "
            f"(PIL: {one_line(e)}); check that it opens in an image viewer"
        ) from e
    return Frames(
        array=rgb[None],  # (1, H, W, 3)
        indices=[0],
        timestamps=[0.0],
        total_frames=1,
        fps=None,
        duration=None,
        path=path,
        is_image=True,
    )
