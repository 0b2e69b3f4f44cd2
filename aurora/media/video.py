"""Loading sampled video frames (``load_video``) and cheap video metadata (``probe_video``).

Both open the file with PyAV after checking the path; every bad-media case becomes a
one-line ``MediaError`` naming the file. Frame decoding itself lives in ``_decode``.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from typing import Callable, Sequence

import av
import numpy as np

from aurora.errors import MediaError
from aurora.media import _decode
from aurora.media._checks import check_file, check_sampling, one_line
from aurora.media.frames import Frames
from aurora.media.limits import MediaLimits, check_size, decode_size
from aurora.media.orientation import (
    apply_display_matrix,
    describe_display_matrix,
    frame_display_matrix,
)
from aurora.media.sampling import fps_indices, segment_middle_indices, stride_indices, uniform_indices


def _reason(error: BaseException) -> str:
    """ffmpeg's own words for an error, without the errno and path PyAV adds."""
    return one_line(getattr(error, "strerror", None) or error or type(error).__name__)


def _check_gif_screen(path: str, limits: MediaLimits) -> None:
    """A GIF's logical screen (bytes 6-9 of its header) is what FFmpeg's decoder allocates for every
    frame; check it by name before opening (probing under max_pixels would only say 'no frame')."""
    with open(path, "rb") as handle:
        header = handle.read(10)
    if header[:6] in (b"GIF87a", b"GIF89a") and len(header) == 10:
        width, height = struct.unpack("<HH", header[6:10])
        if width and height:
            limits.check(path, width, height)


def _decoder_options(limits: MediaLimits) -> dict:
    """FFmpeg codec options: a frame over ``max_pixels`` fails to decode instead of being
    allocated (a PNG frame in a .mov can declare 16000x16000 whatever the container says)."""
    return {"max_pixels": str(limits.max_pixels)}


def _open(path: str, limits: MediaLimits | None = None):
    """Open ``path`` for reading with PyAV, or raise MediaError. Probing (which decodes a
    frame) runs under the limits' ``max_pixels``."""
    options = _decoder_options(limits or MediaLimits.from_env())
    try:
        try:
            return av.open(path, metadata_errors="replace", stream_options=[options] * _PROBED_STREAMS)
        except ValueError as e:  # MPEG-TS/PS and raw streams expose no streams before probing
            if "stream_options" not in str(e):
                raise
            return av.open(path, metadata_errors="replace")  # decoding is still bounded (codec options)
    except (*_decode.DECODE_ERRORS, UnicodeDecodeError) as e:
        raise MediaError(
            f"cannot decode {path!r}: not a video file or it is corrupt "
            f"(ffmpeg: {_reason(e)}); check that it plays in a media player"
        ) from e


_PROBED_STREAMS = 64  # stream_options entries: FFmpeg reads one per stream, extras are unused


def _is_cover_art(stream) -> bool:
    """True for the still picture an audio file carries as a 'video' stream."""
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _video_stream(container, path: str):
    """The container's main video stream, or MediaError when it has none."""
    streams = [s for s in container.streams.video if not _is_cover_art(s)]
    if not streams:
        kinds = sorted({s.type for s in container.streams} & {"audio", "subtitle"})
        if kinds:
            held = f"it holds only {' and '.join(kinds)}; pass a video file"
        else:
            held = "none found; the file may be cut short or corrupt, re-encode or re-download it"
        raise MediaError(f"cannot load {path!r}: it has no video stream ({held})")
    best = container.streams.best("video")
    stream = best if best in streams else streams[0]
    if stream.codec_context is None:  # a codec id FFmpeg has no decoder for (or a corrupt header)
        raise MediaError(f"cannot decode {path!r}: FFmpeg has no decoder for its video stream (the file "
                         f"is corrupt or uses an unsupported codec); re-encode it, e.g. to H.264")
    return stream


def _no_frames(path: str) -> MediaError:
    return MediaError(
        f"cannot decode {path!r}: no video frame could be decoded (the file is empty, cut short "
        f"or corrupt, or its frames are over AURORA_MAX_PIXELS); re-encode or re-download it"
    )


def _average_fps(stream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _stated_duration(container, stream) -> float | None:
    """Duration in seconds from the stream, else the container, else None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _time_origin(timeline: _decode.Timeline, stream) -> int | None:
    """The pts that counts as 0 s: the stream start, else the first frame's pts."""
    if stream.start_time is not None:
        return stream.start_time
    return timeline.pts[0] if timeline.pts else None


def _frame_times(timeline: _decode.Timeline, stream, fps: float | None) -> list[float]:
    """Seconds of every frame from the stream start, in presentation order.

    Without pts (rare) the times assume a constant ``fps``; without that either, [].
    """
    if timeline.pts is None:
        return (np.arange(timeline.count) / fps).tolist() if fps else []
    origin, base = _time_origin(timeline, stream), stream.time_base
    return [float((pts - origin) * base) for pts in timeline.pts]


def _choose_indices(total: int, times: list[float], num_frames, fps, sampling, path):
    """Presentation indices to return, from the sampling options."""
    if fps is not None:
        if not times:
            raise MediaError(
                f"cannot sample {path!r} by fps: its frames carry no timestamps; "
                f"use num_frames without fps"
            )
        return fps_indices(times, fps, num_frames)
    if sampling == "middle":
        return segment_middle_indices(total, num_frames)
    if sampling == "stride":
        return stride_indices(total, num_frames)
    return uniform_indices(total, num_frames)


@dataclass
class _Picture:
    """A decoded frame once converted: (H, W, 3) uint8 RGB at its decode size, not yet upright."""

    array: np.ndarray
    pts: int | None
    time: float | None
    matrix: tuple


class _Converter:
    """VideoFrame -> ``_Picture``, scaled while converting (swscale) so the full-size RGB frame
    never exists. Every frame goes to the first converted frame's decode size, so a stream that
    changes resolution midway still stacks. Frames over the limits raise MediaError."""

    def __init__(self, path: str, size: int | None, limits: MediaLimits):
        self.path, self.size, self.limits = path, size, limits
        self.target: tuple[int, int] | None = None  # (width, height)

    def __call__(self, frame) -> _Picture:
        self.limits.check(self.path, frame.width, frame.height)
        if self.target is None:
            self.target = decode_size(frame.width, frame.height, self.size)
        width, height = self.target
        interpolation = "AREA" if width * height < frame.width * frame.height else None
        array = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation=interpolation)
        return _Picture(array, frame.pts, frame.time, frame_display_matrix(frame))


def _to_array(pictures: list[_Picture]) -> np.ndarray:
    """Converted frames -> (T, H, W, 3) uint8 RGB, upright (the first frame's display matrix
    applies to all)."""
    return apply_display_matrix(np.stack([p.array for p in pictures]), pictures[0].matrix)


def load_video(
    path: str | os.PathLike,
    num_frames: int | None = 8,
    fps: float | None = None,
    sampling: str = "uniform",
    choose: Callable[[int, float | None], Sequence[int]] | None = None,
    size: int | None = None,
) -> Frames:
    """Decode sampled frames of a video as one (T, H, W, 3) uint8 RGB array.

    Frame choice: ``fps`` given -> ``fps_indices`` (capped at ``num_frames`` unless it
    is None); else ``sampling="uniform"`` -> ``uniform_indices`` (at most
    ``num_frames``, AuroraCap) or ``"middle"`` -> ``segment_middle_indices`` (exactly
    ``num_frames``, may repeat frames of a short clip; PLLaVA / MVBench) or ``"stride"`` ->
    ``stride_indices`` (Video-LLaMA); ``choose`` given ->
    ``choose(total_frames, average_fps)`` names the frames (clamped to the clip), for protocols
    with their own rule (MVBench's time windows). A frame that
    will not decode (cut or corrupt file) is replaced by its nearest decodable one and
    ``indices`` says which frame was returned.

    ``size`` (the model's input size) scales frames down while decoding, never up, so the
    shorter side is ``size``: memory follows the model's input, not the file. Frames declaring
    more than the limits (``aurora.media.limits``) are refused before decoding.
    """
    check_sampling(num_frames, fps, sampling)
    check_size(size)
    path = check_file(path)
    limits = MediaLimits.from_env()
    _check_gif_screen(path, limits)
    with _open(path, limits) as container:
        stream = _video_stream(container, path)
        declared = stream.codec_context  # None when FFmpeg has no decoder for the stream
        if declared is not None and declared.width and declared.height:
            limits.check(path, declared.width, declared.height)
        stream_index = stream.index
        timeline = _decode.scan_timeline(container, stream)
        video_fps = _average_fps(stream)
        duration = _stated_duration(container, stream)
        times = _frame_times(timeline, stream, video_fps)
        origin = _time_origin(timeline, stream) if timeline.pts else None
        time_base = stream.time_base
    if timeline.count == 0:
        raise _no_frames(path)

    if choose is not None:
        indices = [min(max(int(i), 0), timeline.count - 1) for i in choose(timeline.count, video_fps)]
        if not indices:
            raise MediaError(f"no frames chosen from {path!r}")
    else:
        indices = _choose_indices(timeline.count, times, num_frames, fps, sampling, path)
    try:
        decoded = _decode.read_frames(
            functools.partial(_open, path, limits), stream_index, timeline, indices,
            _Converter(path, size, limits), _decoder_options(limits),
        )
        if not decoded:
            raise _no_frames(path)
        chosen = [decoded[i] if i in decoded else _nearest_decoded(decoded, i) for i in indices]
        array = _to_array([picture for _, picture in chosen])
    except (*_decode.DECODE_ERRORS, UnicodeDecodeError) as e:
        raise MediaError(
            f"cannot decode {path!r}: {_reason(e)}; the file may be corrupt, re-encode it"
        ) from e
    timestamps = [
        _timestamp(frame, returned, times, origin, time_base) for returned, frame in chosen
    ]
    if duration is None and times:
        duration = times[-1] + (1.0 / video_fps if video_fps else 0.0)
    return Frames(
        array=array,
        indices=[returned for returned, _ in chosen],
        timestamps=timestamps,
        total_frames=timeline.count,
        fps=video_fps,
        duration=duration,
        path=path,
        is_image=False,
    )


def _nearest_decoded(decoded: dict, index: int):
    """The decoded entry whose requested index is closest to ``index``."""
    return decoded[min(decoded, key=lambda known: (abs(known - index), known))]


def _timestamp(frame: _Picture, returned_index: int, times: list[float], origin, time_base) -> float:
    """Seconds of a returned frame from the stream start: from its own pts when known."""
    if frame.pts is not None and origin is not None and time_base:
        return float((frame.pts - origin) * time_base)
    if returned_index < len(times):
        return times[returned_index]
    return float(frame.time or 0.0)


def probe_video(path: str | os.PathLike) -> dict:
    """Cheap metadata without decoding more than one frame.

    Returns ``total_frames`` (as the container states it, else counted from packets),
    ``fps`` (average), ``duration`` (seconds), ``width`` and ``height`` as displayed
    (after rotation, matching ``load_video`` arrays), ``rotation`` and ``mirrored``
    (the display matrix as "turn counter-clockwise by ``rotation`` degrees, then mirror
    left-right if ``mirrored``", PyAV's ``set_display_rotation`` parameters; 0 and
    False when there is none) and ``codec``.
    """
    path = check_file(path)
    limits = MediaLimits.from_env()
    _check_gif_screen(path, limits)
    with _open(path, limits) as container:
        stream = _video_stream(container, path)
        declared = stream.codec_context  # None when FFmpeg has no decoder for the stream
        if declared is not None and declared.width and declared.height:
            limits.check(path, declared.width, declared.height)
        _decode._tune_decoder(stream, _decoder_options(limits))
        first = next(iter(_decode._decode_packets(container, stream)), None)
        if first is None:
            raise _no_frames(path)
        info = {
            "fps": _average_fps(stream),
            "duration": _stated_duration(container, stream),
            "codec": stream.codec_context.name,
        }
        stream_index, stated_frames = stream.index, stream.frames
    total = stated_frames
    if not total:
        with _open(path) as container:
            total = _decode.scan_timeline(container, container.streams[stream_index]).count
    matrix = frame_display_matrix(first)
    rotation, mirrored = describe_display_matrix(matrix)
    swapped = matrix[0] == 0  # a quarter turn: width and height swap
    width, height = (first.height, first.width) if swapped else (first.width, first.height)
    return {"total_frames": total, **info, "width": width, "height": height,
            "rotation": rotation, "mirrored": mirrored}
