"""Checks shared by the loaders: the path is a readable file, the options are in range.

Every failure is an ``AuroraError`` subclass with a one-line message that names the file.
"""

from __future__ import annotations

import errno
import math
import numbers
import os

from aurora.errors import ConfigError, MediaError

SAMPLING_RULES = ("uniform", "middle", "stride")


def one_line(text: object) -> str:
    """Collapse a message (e.g. from ffmpeg or PIL) onto one line."""
    return " ".join(str(text).split())


def check_file(path: str | os.PathLike) -> str:
    """Return ``path`` as a str after checking it is an existing, readable, non-empty file."""
    path = os.fspath(path)
    if "\x00" in path:
        raise MediaError(f"cannot open {path!r}: the path contains a NUL byte; check the path")
    if not os.path.exists(path):
        if os.path.islink(path):
            try:
                os.stat(path)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise MediaError(
                        f"cannot open {path!r}: it is a symlink loop (too many levels of symbolic "
                        f"links); point the link at a real file"
                    ) from e
            raise MediaError(
                f"cannot open {path!r}: it is a symlink to a missing file "
                f"({os.readlink(path)!r}); check the link"
            )
        raise MediaError(f"cannot open {path!r}: no such file; check the path")
    if os.path.isdir(path):
        raise MediaError(f"cannot open {path!r}: it is a directory; pass a video or image file")
    if not os.path.isfile(path):
        raise MediaError(f"cannot open {path!r}: not a regular file; pass a video or image file")
    try:
        with open(path, "rb") as handle:
            first_byte = handle.read(1)
    except OSError as e:
        action = "check the file's permissions" if isinstance(e, PermissionError) else (
            "check the disk or copy the file again"
        )
        raise MediaError(f"cannot read {path!r}: {one_line(e.strerror or e)}; {action}") from e
    if not first_byte:
        raise MediaError(
            f"cannot decode {path!r}: the file is empty (0 bytes); re-download or re-export it"
        )
    return path


def is_count(value: object, minimum: int) -> bool:
    """An integer (numpy ones too, bools not) of at least ``minimum``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def is_rate(value: object) -> bool:
    """A finite real number > 0 (numpy ones too, bools not)."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_sampling(num_frames: int | None, fps: float | None, sampling: str) -> None:
    """Validate the frame-selection options of ``load_video`` / ``load_visual``.

    ``num_frames`` may be None only when ``fps`` is given (then no cap).
    """
    if num_frames is None:
        if fps is None:
            raise ConfigError("num_frames must be an integer >= 1 (None is allowed only with fps)")
    elif not is_count(num_frames, minimum=1):
        raise ConfigError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    if fps is not None and not is_rate(fps):
        raise ConfigError(
            f"fps must be a finite number > 0 (frames per second of video), got {fps!r}"
        )
    if sampling not in SAMPLING_RULES:
        raise ConfigError(
            f"sampling must be one of {', '.join(SAMPLING_RULES)}, got {sampling!r}"
        )
