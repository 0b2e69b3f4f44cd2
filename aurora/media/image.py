"""Loading a still image (PNG, JPEG, WebP) as a one-frame ``Frames``."""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

from aurora.errors import MediaError
from aurora.media._checks import check_file, one_line
from aurora.media.frames import Frames
from aurora.media.limits import MediaLimits, check_size, decode_size

# 16/32-bit greyscale modes that Image.convert("RGB") would clip instead of scale.
_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_BAND = 256  # rows converted at a time


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Alpha is dropped (as LLaVA-style loaders do)."""
    if image.mode in _WIDE_GREY_MODES:
        grey = np.asarray(image)  # (H, W) uint16 or int32
        peak = 65535.0 if grey.max(initial=0) > 255 else 255.0
        out = np.empty(grey.shape, np.uint8)
        for top in range(0, grey.shape[0], _BAND):  # in bands: never a full-size float image
            band = grey[top : top + _BAND].astype(np.float32) * (255.0 / peak)
            out[top : top + _BAND] = np.clip(band, 0, 255).round()
        image = Image.fromarray(out)
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # palette transparency needs RGBA first (PIL warns otherwise)
    return image if image.mode == "RGB" else image.convert("RGB")


def _bomb_pixels(error: Exception) -> int | None:
    """The pixel count in PIL's decompression-bomb message, if it says one."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return int(found.group(1)) if found else None


def load_image(path: str | os.PathLike, size: int | None = None) -> Frames:
    """Load an image as one upright RGB frame: ``array`` is (1, H, W, 3) uint8.

    EXIF orientation is applied. Animated images give their first frame. ``size`` scales the
    image down (never up) so its shorter side is ``size``; JPEGs are decoded at reduced scale
    directly (``draft``). Images declaring more than the limits (``aurora.media.limits``) are
    refused before decoding.
    """
    check_size(size)
    path = check_file(path)
    limits = MediaLimits.from_env()
    try:
        with warnings.catch_warnings():
            # PIL's own bomb check is replaced by aurora's limits (checked before decoding).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if size is not None and image.format == "JPEG":
                    image.draft("RGB", decode_size(*image.size, size))  # decode at 1/2..1/8 scale
                limits.check(path, *image.size)
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgb = _to_rgb(upright)
                del upright
                target = decode_size(*rgb.size, size)
                if target != rgb.size:
                    rgb = rgb.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
                array = np.asarray(rgb, dtype=np.uint8)
    except Image.DecompressionBombError as e:
        pixels = _bomb_pixels(e)
        raise MediaError(
            f"cannot load {path!r}: it declares {pixels / 1e6:.1f} megapixels, over the limit of "
            f"{limits.max_pixels / 1e6:g} megapixels; downscale it"
            if pixels else f"cannot load {path!r}: {one_line(e)}; downscale it"
        ) from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise MediaError(
            f"cannot decode {path!r}: not an image file or it is corrupt "
            f"(PIL: {one_line(e)}); check that it opens in an image viewer"
        ) from e
    return Frames(
        array=array[None],  # (1, H, W, 3)
        indices=[0],
        timestamps=[0.0],
        total_frames=1,
        fps=None,
        duration=None,
        path=path,
        is_image=True,
    )
