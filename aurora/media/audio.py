"""Loading sound: ``load_audio`` decodes an audio stream to float32 mono samples at one rate.

Works on audio files (.wav .mp3 .m4a .flac .ogg ...) and on the sound track of a video.
PyAV decodes and its resampler (FFmpeg's swresample) converts the rate; channels are
averaged to mono. Times are seconds from the audio stream's start. ``add_audio`` fills
``Frames.audio`` for a loaded video (whole track, or its clips' spans).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator

import av
import numpy as np

from aurora.errors import ConfigError, MediaError
from aurora.media._checks import check_file, is_count, is_rate, one_line
from aurora.media._decode import DECODE_ERRORS, demux_safely
from aurora.media.frames import Frames

SAMPLE_RATE = 16000  # Hz; what speech and audio encoders (Whisper, ImageBind) expect
# Memory bound: 4 h of 16 kHz float32 is 0.9 GB. Longer sound is refused, not truncated.
MAX_AUDIO_SECONDS = 4 * 3600.0


def has_audio(path: str | os.PathLike) -> bool:
    """Whether the file has an audio stream (reads the header only, decodes nothing)."""
    path = check_file(path)
    with _open(path) as container:
        return bool(container.streams.audio)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    start: float | None = None,
    end: float | None = None,
    *,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> tuple[np.ndarray, int]:
    """Decode the file's audio between ``start`` and ``end`` seconds (default: all of it).

    Returns ``(samples, sample_rate)``: samples (N,) float32 mono, N = (end - start) x rate
    up to the codec's frame granularity; fewer where the track ends sooner (empty when
    ``start`` is past its end). Seeks to ``start`` rather than decoding from the beginning.
    A span longer than ``max_seconds`` is refused, so a long file cannot fill memory.
    """
    _check_options(sample_rate, start, end, max_seconds)
    path = check_file(path)
    start = float(start or 0.0)
    with _open(path) as container:
        stream = container.streams.best("audio")  # the default track of a multi-track file
        if stream is None:
            raise MediaError(f"cannot load audio from {path!r}: no audio stream in the file")
        _check_length(_stated_duration(container, stream), start, end, max_seconds, path)
        samples, first = _decode(container, stream, sample_rate, start, end, max_seconds, path)
    # samples[0] is at ``first`` seconds; cut [start, end) out of the decoded run.
    low = max(0, round((start - first) * sample_rate))
    high = len(samples) if end is None else max(low, round((end - first) * sample_rate))
    return samples[low:high], sample_rate


def add_audio(frames: Frames, sample_rate: int = SAMPLE_RATE) -> Frames:
    """A copy of ``frames`` with ``audio`` and ``sample_rate`` filled from its file's sound:
    the whole track, or with ``frames.clips`` the clips' spans laid end to end (see
    ``Frames``). No sound (or an image) -> ``audio`` None; the caller decides if that is wrong."""
    if frames.is_image or not has_audio(frames.path):
        return dataclasses.replace(frames, audio=None, sample_rate=None)
    if not frames.clips:
        audio, _ = load_audio(frames.path, sample_rate)
    else:
        pieces = []
        for start, end in frames.clips:
            piece, _ = load_audio(frames.path, sample_rate, start, end)
            size = round((end - start) * sample_rate)
            pieces.append(np.pad(piece[:size], (0, size - len(piece[:size]))))  # exactly `size`
        audio = np.concatenate(pieces).astype(np.float32, copy=False)
    return dataclasses.replace(frames, audio=audio, sample_rate=sample_rate)


def _open(path: str):
    try:
        return av.open(path, metadata_errors="replace")
    except (*DECODE_ERRORS, UnicodeDecodeError) as e:
        raise MediaError(
            f"cannot decode {path!r}: not a media file or it is corrupt "
            f"(ffmpeg: {one_line(getattr(e, 'strerror', None) or e)}); check that it plays"
        ) from e


def _check_options(sample_rate, start, end, max_seconds) -> None:
    if not is_count(sample_rate, minimum=1):
        raise ConfigError(f"sample_rate must be an integer >= 1 (Hz), got {sample_rate!r}")
    if start is not None and not (is_rate(start) or (start == 0 and not isinstance(start, bool))):
        raise ConfigError(f"start must be a finite number of seconds >= 0, got {start!r}")
    if end is not None and not (is_rate(end) and end > (start or 0)):
        raise ConfigError(f"end must be a finite number of seconds after start, got {end!r}")
    if not is_rate(max_seconds):
        raise ConfigError(f"max_seconds must be a finite number > 0, got {max_seconds!r}")


def _stated_duration(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def _too_long(path: str, seconds: float, max_seconds: float) -> MediaError:
    return MediaError(
        f"refusing to load {seconds / 3600:.2f} h of audio from {path!r}: over the "
        f"{max_seconds / 3600:.2f} h limit; pass start/end for a part or raise max_seconds"
    )


def _check_length(duration, start: float, end, max_seconds: float, path: str) -> None:
    """Refuse before decoding when the stated length already says the span is too long."""
    stop = end if duration is None else min(end or math.inf, duration)
    if stop is not None and stop - start > max_seconds:
        raise _too_long(path, stop - start, max_seconds)


def _frames(container, stream) -> Iterator:
    """Decoded audio frames from the current position; undecodable packets are skipped,
    and the decoder is drained at the end."""
    for packet in demux_safely(container, stream):
        try:
            yield from packet.decode()  # the last (empty) packet drains the decoder
        except DECODE_ERRORS:
            continue


def _decode(container, stream, sample_rate, start, end, max_seconds, path):
    """Resample from (just before) ``start`` to ``end``: ((N,) float32, time of sample 0)."""
    origin, base = stream.start_time or 0, stream.time_base
    if start > 0:
        try:  # lands on a packet at or before start; the cut after decoding is exact
            container.seek(origin + int(start / base), stream=stream, backward=True)
        except DECODE_ERRORS:
            pass  # decode from the beginning instead: slower, the same samples
    # Keep the channels and average them below: FFmpeg's own stereo -> mono mix sums the two
    # at 0.71 each (3 dB louder); the mean is what Video-LLaMA's audio path (torchaudio) takes.
    resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
    chunks: list[np.ndarray] = []
    first, count, decoded = None, 0, False
    for frame in _frames(container, stream):
        decoded = True
        time = float((frame.pts - origin) * base) if frame.pts is not None else None
        if first is None:
            first = time if time is not None else 0.0
        if end is not None and time is not None and time >= end:
            break
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().mean(axis=0))  # (channels, n) planes -> (n,)
            count += out.samples
        if count / sample_rate - max(0.0, start - first) > max_seconds:
            raise _too_long(path, count / sample_rate, max_seconds)
    if not decoded and start > 0 and _decodes_from_start(container, stream, origin):
        return np.zeros(0, np.float32), start  # the seek went past the end of the track
    if not decoded:
        raise MediaError(
            f"cannot decode the audio of {path!r}: no audio frame could be decoded "
            f"(cut short or corrupt); re-encode or re-download it"
        )
    chunks += [out.to_ndarray().mean(axis=0) for out in resampler.resample(None)]  # flush
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return samples.astype(np.float32, copy=False), first


def _decodes_from_start(container, stream, origin) -> bool:
    """Whether any frame decodes from the stream start (told apart: past the end vs corrupt)."""
    try:
        container.seek(origin, stream=stream, backward=True)
    except DECODE_ERRORS:
        return False
    return next(_frames(container, stream), None) is not None
