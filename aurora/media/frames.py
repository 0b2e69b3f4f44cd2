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

    Optional, filled only when asked for: ``clips[k] = (start, end)`` seconds of clip ``k``
    when frames were sampled as clips (clip ``k``'s frames are one contiguous run of
    ``array``); ``audio`` (samples,) float32 mono at ``sample_rate`` Hz: the whole sound
    track, or with ``clips`` each clip's span in turn, clip ``k`` exactly
    ``round((end - start) * sample_rate)`` samples (zeros past the track's end), so clip
    ``k`` starts at the sum of the earlier clips' lengths. None when the media has no sound.
    """

    array: np.ndarray
    indices: list[int]
    timestamps: list[float]
    total_frames: int
    fps: float | None
    duration: float | None
    path: str
    is_image: bool
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    clips: list[tuple[float, float]] | None = None
