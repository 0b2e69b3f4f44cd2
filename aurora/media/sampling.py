"""Frame-index sampling rules: which frames of a clip a model sees.

All functions work on frame indices in presentation order (0 = first frame shown) and
return plain ``list[int]`` in ascending order.

* ``uniform_indices``         AuroraCap's rule: evenly spaced, first and last frame included.
* ``segment_middle_indices``  PLLaVA / MVBench rule: the middle frame of equal segments.
* ``stride_indices``          Video-LLaMA's rule: every (total / N)-th frame from the first.
* ``fps_indices``             a fixed rate in video time, optionally capped to N frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aurora.errors import ConfigError
from aurora.media._checks import is_count, is_rate

# Timestamps closer than this (seconds) count as equal; pts * time_base rounding
# makes e.g. 1.0 come out as 0.99999999.
_TIME_EPS = 1e-6


def _check_count(name: str, value: int, minimum: int) -> None:
    if not is_count(value, minimum):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def uniform_indices(total: int, num_frames: int) -> list[int]:
    """Evenly spaced indices, AuroraCap's rule exactly.

    ``np.linspace(0, total - 1, min(total, num_frames))`` truncated to int, so a clip
    shorter than ``num_frames`` gives every frame once (never duplicates).
    """
    _check_count("total", total, 0)
    _check_count("num_frames", num_frames, 1)
    return np.linspace(0, total - 1, min(total, num_frames), dtype=int).tolist()


def stride_indices(total: int, num_frames: int) -> list[int]:
    """Video-LLaMA's rule (its load_video): ``np.arange(0, total, total / n)`` truncated to int with
    n = min(total, num_frames): the first frame, then steps of total / n (the last frame only when it
    falls on a step). Kept to n indices where float rounding would add one more."""
    _check_count("total", total, 1)
    _check_count("num_frames", num_frames, 1)
    n = min(total, num_frames)
    return np.arange(0, total, total / n).astype(int)[:n].tolist()


def segment_middle_indices(total: int, num_segments: int) -> list[int]:
    """Middle frame of each of ``num_segments`` equal segments (PLLaVA / MVBench rule).

    ``seg = (total - 1) / num_segments``; index ``i`` is ``int(seg / 2 + round(seg * i))``
    with numpy's round-half-to-even, as in the reference code. Always returns
    ``num_segments`` indices, so a clip shorter than that repeats frames (the models
    trained with this rule expect a fixed frame count).
    """
    _check_count("total", total, 1)
    _check_count("num_segments", num_segments, 1)
    return window_middle_indices(num_segments, total - 1)


def window_middle_indices(num_segments: int, last: int, fps: float | None = None,
                          bound: tuple[float, float] | None = None, first: int = 0) -> list[int]:
    """The same rule over frames first..last (inclusive), optionally within `bound` seconds (MVBench's
    `get_index`): start = max(first, round(bound[0] * fps)), end = min(round(bound[1] * fps), last)
    with Python's round, seg = (end - start) / n, frame i = int(start + seg / 2 + round(seg * i))."""
    if bound is None:
        start, end = first, last  # the published (-100000, 100000) s bound saturates to these
    else:
        start, end = max(first, round(bound[0] * fps)), min(round(bound[1] * fps), last)
    seg_size = float(end - start) / num_segments
    return [int(start + seg_size / 2 + np.round(seg_size * i)) for i in range(num_segments)]


def fps_indices(
    timestamps: Sequence[float], fps: float, num_frames: int | None = None
) -> list[int]:
    """Sample ``fps`` frames per second of video time, optionally capped at ``num_frames``.

    ``timestamps`` are the presentation times (seconds, ascending) of every frame, so
    variable-frame-rate video is sampled by real time, not by frame count. For a
    constant-rate clip pass ``np.arange(total) / video_fps``.

    Sample times are ``t0, t0 + 1/fps, t0 + 2/fps, ...`` from the first frame's time
    ``t0`` until the clip ends, which is taken as the last frame's time plus the median
    gap between frames (how long the last frame stays on screen). Each sample time takes
    the frame on screen at that moment (the last frame whose timestamp is <= it). A
    frame picked twice (``fps`` above the video's rate) is kept once, so the result
    never repeats and an fps above the video's rate gives every frame.
    If ``num_frames`` is given and more frames were picked, ``uniform_indices`` keeps
    ``num_frames`` of them, evenly spread over the picked set.
    """
    if not is_rate(fps):
        raise ConfigError(f"fps must be a finite number > 0, got {fps!r}")
    if num_frames is not None:
        _check_count("num_frames", num_frames, 1)
    times = np.asarray(timestamps, dtype=np.float64)  # (T,) seconds, ascending
    if times.size <= 1:
        return list(range(times.size))
    rel = times - times[0]
    end = rel[-1] + float(np.median(np.diff(rel)))  # when the last frame leaves the screen
    # Frame i is picked when some sample time k / fps falls while it is on screen,
    # i.e. in [rel[i], rel[i + 1]). Done per frame (O(T)) rather than per sample, so
    # a huge fps on a long clip costs nothing extra.
    first_sample = np.ceil((rel - _TIME_EPS) * fps)  # (T,) first k with k/fps >= rel[i]
    leaves_screen = np.append(rel[1:], end)  # (T,)
    picked = np.flatnonzero(first_sample / fps + _TIME_EPS < leaves_screen).tolist()
    picked = picked or [0]  # only when timestamps do not increase at all
    if num_frames is not None and len(picked) > num_frames:
        picked = [picked[i] for i in uniform_indices(len(picked), num_frames)]
    return picked
