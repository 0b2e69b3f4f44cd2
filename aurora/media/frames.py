"""The ``Frames`` result type returned by every Aurora media loader."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frames:
    """Frames sampled from one video or image, ready for a vision encoder.

    ``array`` is (T, H, W, 3) uint8 RGB, already turned upright (rotation metadata
    for video, EXIF orientation for images). ``indices[t]`` is the presentation-order
    index (0-based) of frame ``t`` in the stream and ``timestamps[t]`` its time in
    seconds from the stream start. ``indices`` may repeat under ``sampling="middle"``
    on a clip shorter than the requested frame count.
    """

    array: np.ndarray
    indices: list[int]
    timestamps: list[float]
    total_frames: int
    fps: float | None
    duration: float | None
    path: str
    is_image: bool
