"""Images shipped inside benchmark files (base64 cells of MMBench's TSV) written once to a folder,
so every model under test opens them through `aurora.media` like any other file.

A file's extension follows its bytes (PNG, JPEG, WebP as they are; anything else PIL can read is
re-saved as PNG). Writes are atomic and skipped when the file is already there, so ranks that
share a folder and resumed runs never rewrite an image.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path

from aurora.errors import ConfigError

_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"))


def _extension(raw: bytes) -> str | None:
    for magic, extension in _MAGIC:
        if raw.startswith(magic):
            return extension
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return ".webp"
    return None


def write_base64_image(data: str, folder: str | Path, stem: str) -> str:
    """Decode one base64 image to `folder/stem.<ext>` (once); returns the path."""
    folder = Path(folder)
    for extension in (".png", ".jpg", ".webp"):
        if (folder / (stem + extension)).is_file():
            return str(folder / (stem + extension))
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the image of item {stem} is not valid base64") from None
    extension = _extension(raw)
    if extension is None:  # another format: re-save as PNG so the media loader knows the extension
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(raw))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
        except (UnidentifiedImageError, OSError):
            raise ConfigError(f"the image of item {stem} is not a readable image") from None
        raw, extension = buffer.getvalue(), ".png"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (stem + extension)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return str(path)
