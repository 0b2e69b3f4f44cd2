"""Turning decoded video frames upright using the stream's display matrix.

Phones store video in sensor orientation plus a display matrix (ISO/IEC 14496-12
``tkhd`` matrix, FFmpeg ``AV_FRAME_DATA_DISPLAYMATRIX``) saying how a player must
rotate or mirror it. FFmpeg's matrix ``[a b u; c d v; x y w]`` maps a source pixel
``(x, y)`` (x right, y down) to the display position ``(a*x + c*y, b*x + d*y)``
(plus a translation). PyAV's ``VideoFrame.rotation`` is the counter-clockwise angle
of that matrix: -90 for an iPhone portrait clip, whose matrix is (a, b, c, d) =
(0, 1, -1, 0) and which a player shows rotated 90 degrees clockwise.

Only multiples of 90 degrees are supported; other angles snap to the nearest one.
"""

from __future__ import annotations

import math
import struct

import numpy as np

# (a, b, c, d) of the display matrix, each reduced to -1, 0 or 1.
SignMatrix = tuple[int, int, int, int]
IDENTITY: SignMatrix = (1, 0, 0, 1)


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _snap(a: float, b: float, c: float, d: float) -> SignMatrix:
    """Snap a (possibly scaled or slightly rotated) 2x2 matrix to the nearest quarter turn."""
    if abs(a) + abs(d) >= abs(b) + abs(c):
        return (_sign(a) or 1, 0, 0, _sign(d) or 1)
    return (0, _sign(b) or 1, _sign(c) or 1, 0)


def matrix_from_rotation(degrees: float) -> SignMatrix:
    """The display matrix of a pure counter-clockwise rotation (PyAV's ``rotation``)."""
    theta = math.radians(degrees)
    return _snap(math.cos(theta), -math.sin(theta), math.sin(theta), math.cos(theta))


def frame_display_matrix(frame) -> SignMatrix:
    """The display matrix of a decoded PyAV ``VideoFrame`` (identity when it has none).

    Reads the DISPLAYMATRIX side data (nine native-endian int32, 16.16 fixed point for
    a, b, c, d) so mirrored clips are handled too; falls back to ``frame.rotation``.
    """
    for side_data in frame.side_data:
        if str(side_data.type).endswith("DISPLAYMATRIX"):
            raw = bytes(memoryview(side_data))
            if len(raw) >= 36:
                a, b, _, c, d = struct.unpack("=5i", raw[:20])
                return _snap(a, b, c, d)
    rotation = getattr(frame, "rotation", 0) or 0
    return matrix_from_rotation(rotation)


def apply_display_matrix(frames: np.ndarray, matrix: SignMatrix) -> np.ndarray:
    """Show (T, H, W, C) frames as a player would under ``matrix``; returns a contiguous array.

    A rotation by 90 or 270 degrees returns (T, W, H, C). Pure rotations equal
    ``np.rot90(frames, k=rotation // 90, axes=(1, 2))`` with PyAV's ``rotation``.
    """
    a, b, c, d = matrix
    if matrix == IDENTITY:
        return frames
    if a != 0:
        # x' = a*x, y' = d*y: mirror columns and/or rows.
        out = frames[:, :, ::-1] if a < 0 else frames
        out = out[:, ::-1] if d < 0 else out
    else:
        # x' = c*y, y' = b*x: rows of the output come from columns of the source.
        out = frames.transpose(0, 2, 1, 3)  # (T, W, H, C), out[t, x, y] = src[t, y, x]
        out = out[:, ::-1] if b < 0 else out
        out = out[:, :, ::-1] if c < 0 else out
    # Negative strides break torch.from_numpy; make a plain C-contiguous copy.
    return np.ascontiguousarray(out)


def describe_display_matrix(matrix: SignMatrix) -> tuple[int, bool]:
    """``(rotation, mirrored)`` such that the matrix means: rotate counter-clockwise by
    ``rotation`` degrees (0, 90, 180 or -90), then mirror left-right if ``mirrored``.

    The same parameters as PyAV's ``VideoStream.set_display_rotation(rotation, hflip)``.
    """
    probe = np.arange(6).reshape(1, 2, 3, 1)  # (T, H, W, C), all values distinct
    shown = apply_display_matrix(probe, matrix)
    for rotation in (0, 90, 180, -90):
        turned = np.rot90(probe, k=rotation // 90, axes=(1, 2))
        for mirrored in (False, True):
            candidate = turned[:, :, ::-1] if mirrored else turned
            if candidate.shape == shown.shape and np.array_equal(candidate, shown):
                return rotation, mirrored
    raise AssertionError(f"unreachable: {matrix} is not a quarter-turn matrix")


def apply_rotation(frames: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate (T, H, W, C) frames counter-clockwise by ``degrees`` (PyAV's ``rotation``)."""
    return apply_display_matrix(frames, matrix_from_rotation(degrees))
