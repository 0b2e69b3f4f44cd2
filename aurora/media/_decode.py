"""Decoding chosen frames of a PyAV video stream, seeking instead of decoding everything.

How a frame is found:

1. ``scan_timeline`` demuxes the stream's packets once without decoding. Their pts,
   sorted, are the presentation order (exact for variable frame rate and for
   containers that state no frame count: webm, mkv, gif); the keyframe packets say
   where decoding can start.
2. ``read_with_seeks`` visits the wanted pts in ascending order. When a keyframe lies
   after the last decoded frame and at or before the target, it seeks to that keyframe
   and decodes forward to the target; otherwise it keeps decoding forward. So a short
   clip or a dense sample costs one sequential pass, a long clip a few GOPs per frame.
3. If a seek fails or lands after its target (some demuxers index by dts), or some
   targets never decode (a cut or corrupt file), ``read_nearest`` decodes the file
   from the start once and takes, for each missing target, the nearest frame that did
   decode.

Streams whose packets carry no usable timestamps are read by ordinal position with
``read_nearest`` alone.

Every kept frame goes through ``convert`` as soon as it is chosen (``load_video`` scales it
down to the model's input there), so no more than one or two full-size decoded frames are
ever held, however many are sampled.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import av

# Errors PyAV raises for bad data while reading or decoding.
DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError)


@dataclass
class Timeline:
    """Where a stream's frames are, found from packets alone.

    ``pts`` holds every frame's pts in ascending (presentation) order, or is None when
    the packets have no usable timestamps (missing or repeated); ``keyframes`` holds the
    ascending pts of keyframe packets; ``count`` is the number of frames.
    """

    pts: list[int] | None
    keyframes: list[int]
    count: int


class _SeekMiss(Exception):
    """Seeking did not land at or before its target; decode sequentially instead."""


def demux_safely(container, stream) -> Iterator:
    """Yield the stream's packets, stopping quietly where the file is cut or unreadable."""
    try:
        yield from container.demux(stream)
    except DECODE_ERRORS:
        return


def scan_timeline(container, stream) -> Timeline:
    """Demux (not decode) every packet of ``stream`` to find frame pts and keyframes."""
    stamps: list[int | None] = []
    keyframes: list[int] = []
    for packet in demux_safely(container, stream):
        if packet.size == 0:  # the end-of-stream flush packet, not a frame
            continue
        stamp = packet.pts if packet.pts is not None else packet.dts
        stamps.append(stamp)
        if packet.is_keyframe and stamp is not None:
            keyframes.append(stamp)
    usable = None not in stamps and len(set(stamps)) == len(stamps)
    return Timeline(
        pts=sorted(stamps) if usable else None,
        keyframes=sorted(keyframes) if usable else [],
        count=len(stamps),
    )


def _decode_packets(container, stream) -> Iterator:
    """Yield every frame the decoder produces from the container's current position.

    All decoding in ``aurora.media`` goes through here (tests wrap it to count decoded
    frames). A packet the decoder rejects (corrupt, cut short) is skipped; at the end
    the decoder is drained so frames held back for reordering still come out.
    """
    drained = False
    for packet in demux_safely(container, stream):
        try:
            frames = packet.decode()
        except DECODE_ERRORS:
            continue
        drained = drained or packet.size == 0
        yield from frames
    if not drained and stream.codec_context is not None:  # None: FFmpeg has no decoder for it
        try:
            yield from stream.codec_context.decode(None)
        except DECODE_ERRORS:
            return


def _keyframe_at_or_before(keyframes: list[int], pts: int) -> int | None:
    position = bisect.bisect_right(keyframes, pts)
    return keyframes[position - 1] if position else None


def _same(frame):
    return frame


def read_with_seeks(container, stream, timeline: Timeline, targets: list[int], convert=_same) -> dict:
    """Decode the frames whose pts are in ``targets`` (ascending, unique).

    Returns ``{pts: convert(VideoFrame)}``; targets that never decode are simply absent.
    Raises ``_SeekMiss`` when seeking misbehaves (the caller falls back).
    """
    found: dict = {}
    frames = None  # the current forward-decoding iterator
    position = timeline.pts[0]  # pts of the last decoded frame (stream start at first)
    next_target = 0
    while next_target < len(targets):
        target = targets[next_target]
        keyframe = _keyframe_at_or_before(timeline.keyframes, target)
        just_seeked = False
        if keyframe is not None and keyframe > position:
            # Decoding from that keyframe reaches the target sooner than going on.
            try:
                container.seek(keyframe, backward=True, any_frame=False, stream=stream)
            except DECODE_ERRORS as e:
                raise _SeekMiss from e
            frames, just_seeked = _decode_packets(container, stream), True
        elif frames is None:
            frames = _decode_packets(container, stream)
        for frame in frames:
            if frame.pts is None or (just_seeked and frame.pts > target):
                raise _SeekMiss
            just_seeked = False
            position = frame.pts
            if position < target:
                continue
            # Targets passed over without an exact match did not decode: skip them.
            while next_target < len(targets) and targets[next_target] < position:
                next_target += 1
            if next_target < len(targets) and targets[next_target] == position:
                found[position] = convert(frame)
                next_target += 1
            break
        else:
            break  # end of stream: the remaining targets did not decode
    return found


def read_nearest(container, stream, targets: list[int], by_pts: bool, convert=_same) -> dict:
    """Decode from the start once; for each target take the nearest decoded frame.

    Frames are keyed by pts (``by_pts``) or by their ordinal in decode output. Returns
    ``{target: (key, convert(VideoFrame))}``; empty when nothing decodes. ``targets``
    ascending. Only frames that are taken are converted.
    """
    found: dict = {}
    previous = None  # [key, frame, converted or None] of the last decoded frame
    next_target = 0

    def take(entry):
        if entry[2] is None:
            entry[2] = convert(entry[1])
        return (entry[0], entry[2])

    for ordinal, frame in enumerate(_decode_packets(container, stream)):
        key = frame.pts if by_pts else ordinal
        if key is None:
            continue
        current = [key, frame, None]
        # Every target up to this key now has its two neighbours: previous and this one.
        while next_target < len(targets) and targets[next_target] <= key:
            target = targets[next_target]
            use_previous = previous is not None and target - previous[0] <= key - target
            found[target] = take(previous if use_previous else current)
            next_target += 1
        previous = current
        if next_target == len(targets):
            break
    for target in targets[next_target:]:  # past the last decodable frame
        if previous is not None:
            found[target] = take(previous)
    return found


def read_frames(
    open_container, stream_index: int, timeline: Timeline, indices: list[int], convert=_same,
    decoder_options: dict | None = None,
):
    """Decode the frames at presentation ``indices`` (any order, repeats allowed).

    ``open_container()`` returns a fresh input container, so each pass starts from a
    clean decoder. Returns ``{index: (returned_index, convert(VideoFrame))}`` where
    ``returned_index`` differs from ``index`` only when that frame would not decode and
    its nearest decodable neighbour stands in; empty when nothing decodes.
    ``decoder_options`` are FFmpeg codec options (``max_pixels`` bounds what a frame may allocate).
    """
    pass_ = functools.partial(_one_pass, decoder_options=decoder_options)
    wanted = sorted(set(indices))
    if timeline.pts is None:  # no timestamps: count frames in decode order
        return pass_(open_container, stream_index, read_nearest, wanted, False, convert)

    pts_of = {index: timeline.pts[index] for index in wanted}
    targets = sorted(pts_of.values())
    try:
        exact = pass_(open_container, stream_index, read_with_seeks, timeline, targets, convert)
    except _SeekMiss:
        exact = {}
    found = {pts: (pts, frame) for pts, frame in exact.items()}
    missing = [pts for pts in targets if pts not in found]
    if missing:
        found.update(pass_(open_container, stream_index, read_nearest, missing, True, convert))
    return {
        index: (bisect.bisect_left(timeline.pts, found[pts][0]), found[pts][1])
        for index, pts in pts_of.items()
        if pts in found
    }


def _one_pass(open_container, stream_index: int, reader, *args, decoder_options=None) -> dict:
    """Run ``reader(container, stream, ...)`` on a freshly opened container."""
    with open_container() as container:
        stream = container.streams[stream_index]
        _tune_decoder(stream, decoder_options)
        return reader(container, stream, *args)


def _tune_decoder(stream, options: dict | None = None) -> None:
    """Let FFmpeg pick frame and/or slice threading (a big speed-up on long HD clips); set
    codec ``options`` before the decoder opens."""
    try:
        if options:
            stream.codec_context.options = dict(options)
        stream.codec_context.thread_type = "AUTO"
    except (AttributeError, ValueError, av.error.FFmpegError):
        pass
