"""Frames fixed by a benchmark's protocol (MVBench): the middle frame of equal segments of a whole
clip, of a time window of it, or of a folder of numbered frames.

MVBench (OpenGVLab/Ask-Anything, video_chat2/mvbench.ipynb, `get_index`): with a bound (start, end)
in seconds, start_idx = max(first, round(start * fps)), end_idx = min(round(end * fps), last);
seg = (end_idx - start_idx) / n; frame i = int(start_idx + seg / 2 + round(seg * i)), numpy's
round-half-to-even. Videos use their average fps, GIFs 25 fps, frame folders (files 00001.jpg, ...,
numbered from 1) 3 fps. Without a bound this is `aurora.media.segment_middle_indices`.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from aurora import media
from aurora.errors import MediaError
from aurora.eval.task import FrameSpec

GIF_FPS = 25.0  # MVBench's read_gif default
FOLDER_FPS = 3.0  # MVBench's read_frame default (TVQA frames_fps3_hq)


def window_indices(num_segments: int, last: int, fps: float | None = None,
                   bound: tuple[float, float] | None = None, first: int = 0) -> list[int]:
    """MVBench's frame choice over frames first..last (inclusive), optionally within `bound` seconds."""
    if bound is None:
        start_idx, end_idx = first, last  # the published (-100000, 100000) s bound saturates to these
    else:
        start_idx = max(first, round(bound[0] * fps))  # Python's round, as published
        end_idx = min(round(bound[1] * fps), last)
    seg = float(end_idx - start_idx) / num_segments
    return [int(start_idx + seg / 2 + np.round(seg * i)) for i in range(num_segments)]


def load_frames(path: str, spec: FrameSpec) -> media.Frames:
    """The frames `spec` asks for, as `aurora.media.Frames`."""
    if spec.kind == "frame":
        return _load_folder(path, spec)
    if spec.bound is None:
        return media.load_video(path, num_frames=spec.num_frames, sampling="middle")
    fps = spec.frame_fps or (GIF_FPS if spec.kind == "gif" else None)
    return _load_video_at(path, lambda total, video_fps: window_indices(
        spec.num_frames, total - 1, fps or video_fps, spec.bound))


def _load_folder(folder: str, spec: FrameSpec) -> media.Frames:
    if not os.path.isdir(folder):
        raise MediaError(f"cannot open {folder!r}: expected a folder of frames (00001.jpg, ...)")
    fps = spec.frame_fps or FOLDER_FPS
    total = len(os.listdir(folder))
    indices = window_indices(spec.num_frames, total, fps, spec.bound, first=1)  # numbered from 1, as published
    images = [media.load_image(os.path.join(folder, f"{i:05d}.jpg")).array[0] for i in indices]
    if len({image.shape for image in images}) > 1:
        raise MediaError(f"the frames in {folder!r} differ in size")
    return media.Frames(array=np.stack(images), indices=indices, timestamps=[i / fps for i in indices],
                        total_frames=total, fps=fps, duration=total / fps, path=folder, is_image=False)


def _load_video_at(path: str, choose) -> media.Frames:
    """Decode the frames `choose(total_frames, average_fps)` names.

    A stopgap built on `aurora.media`'s decoder until `media.load_video` takes explicit indices
    (the core change proposed with this module); decoding still happens only inside aurora.media.
    """
    from aurora.media import _decode
    from aurora.media import video as _video
    from aurora.media._checks import check_file

    path = check_file(path)
    with _video._open(path) as container:
        stream = _video._video_stream(container, path)
        stream_index = stream.index
        timeline = _decode.scan_timeline(container, stream)
        video_fps = _video._average_fps(stream)
        duration = _video._stated_duration(container, stream)
        times = _video._frame_times(timeline, stream, video_fps)
        origin = _video._time_origin(timeline, stream) if timeline.pts else None
        time_base = stream.time_base
    if timeline.count == 0 or not video_fps:
        raise _video._no_frames(path)
    indices = [min(max(i, 0), timeline.count - 1) for i in choose(timeline.count, video_fps)]
    try:
        decoded = _decode.read_frames(functools.partial(_video._open, path), stream_index, timeline, indices)
        if not decoded:
            raise _video._no_frames(path)
        chosen = [decoded[i] if i in decoded else _video._nearest_decoded(decoded, i) for i in indices]
        array = _video._to_array([frame for _, frame in chosen])
    except (*_decode.DECODE_ERRORS, UnicodeDecodeError) as e:
        raise MediaError(f"cannot decode {path!r}: {e}; the file may be corrupt, re-encode it") from e
    timestamps = [_video._timestamp(frame, i, times, origin, time_base) for i, frame in chosen]
    return media.Frames(array=array, indices=[i for i, _ in chosen], timestamps=timestamps,
                        total_frames=timeline.count, fps=video_fps, duration=duration, path=path, is_image=False)
