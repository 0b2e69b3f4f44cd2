"""Test fixtures for media: tiny videos, images and broken files made with PyAV and PIL.

``make_frames`` draws frames whose index is written as a 4x4 grid of dark/bright cells
(16 bits), big enough to survive lossy codecs, and ``frame_index_of`` reads it back, so
a test can check exactly which frames a loader returned. Keep fixtures small (e.g.
64x64, 16-60 frames) so suites stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
from PIL import Image

_GRID = 4  # cells per side; the index is stored in _GRID * _GRID bits
_MAX_FRAMES = 2 ** (_GRID * _GRID)

# Encoder and pixel format per extension; yuv420p needs even frame sizes.
_VIDEO_CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
    ".gif": ("gif", "rgb8"),
}


def _luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (...) BT.601 luma as float."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def make_frames(num_frames: int, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 RGB frames, frame ``i`` encoding ``i``.

    Bit ``b`` of the index (row-major over a 4x4 grid, least significant first) makes
    cell ``b`` bright, else dark. ``seed`` picks the bright and dark colours, so two
    fixtures can differ while staying decodable by ``frame_index_of``.
    """
    if not 1 <= num_frames <= _MAX_FRAMES:
        raise ValueError(f"num_frames must be in 1..{_MAX_FRAMES}, got {num_frames}")
    if height < 16 or width < 16:
        raise ValueError(
            f"frames must be at least 16x16 to survive compression, got {height}x{width}"
        )
    rng = np.random.default_rng(seed)
    dark = rng.integers(0, 50, size=3)  # luma well below the 128 threshold
    bright = rng.integers(200, 256, size=3)  # luma well above it
    bits = (np.arange(num_frames)[:, None] >> np.arange(_GRID * _GRID)) & 1  # (T, 16)
    cells = bits.reshape(num_frames, _GRID, _GRID).astype(bool)  # (T, 4, 4)
    rows = np.arange(height) * _GRID // height  # (H,) grid row of each pixel row
    cols = np.arange(width) * _GRID // width  # (W,) grid column of each pixel column
    on = cells[:, rows][:, :, cols]  # (T, H, W)
    return np.where(on[..., None], bright, dark).astype(np.uint8)


def frame_index_of(frame_rgb: np.ndarray) -> int:
    """Read back the index ``make_frames`` drew into one (H, W, 3) RGB frame."""
    height, width = frame_rgb.shape[:2]
    luma = _luma(frame_rgb)  # (H, W)
    index = 0
    for bit in range(_GRID * _GRID):
        row, col = divmod(bit, _GRID)
        # Only the central half of a cell: edges blur under lossy compression.
        top, bottom = (4 * row + 1) * height // (4 * _GRID), (4 * row + 3) * height // (4 * _GRID)
        left, right = (4 * col + 1) * width // (4 * _GRID), (4 * col + 3) * width // (4 * _GRID)
        if luma[top:bottom, left:right].mean() > 128:
            index |= 1 << bit
    return index


def _encode_settings(stream, codec: str, gop: int | None) -> None:
    if gop is not None:
        stream.codec_context.gop_size = gop
    if codec == "libx264":
        params = "scenecut=0" + (f":keyint={gop}:min-keyint={gop}" if gop else "")
        stream.codec_context.options = {"x264-params": params}
    elif codec.startswith("libvpx"):
        stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        stream.codec_context.bit_rate = 1_000_000
    elif codec == "mpeg4":
        stream.codec_context.bit_rate = 2_000_000


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 8,
    codec: str | None = None,
    *,
    gop: int | None = None,
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
    hflip: bool = False,
    faststart: bool = False,
) -> str:
    """Encode (T, H, W, 3) uint8 RGB ``frames`` to ``path``; returns the path as str.

    The codec follows the extension (.mp4/.mov/.mkv libx264, .webm libvpx-vp9, .avi
    mpeg4, .gif gif) unless ``codec`` is given. ``gop`` sets the keyframe interval.
    ``timestamps`` (seconds, ascending) make a variable-frame-rate file; otherwise
    frame ``i`` is at ``i / fps``. ``rotation`` (counter-clockwise degrees, as PyAV's
    ``VideoFrame.rotation`` reads back) and ``hflip`` write a display matrix (mp4,
    mov, mkv, webm). ``faststart`` puts the mp4/mov index before the data, so a cut
    file still opens.
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    default_codec, pix_fmt = _VIDEO_CODECS.get(extension, ("libx264", "yuv420p"))
    codec = codec or default_codec
    _, height, width, _ = frames.shape
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"{codec} with yuv420p needs even sizes, got {height}x{width}")
    options = {"movflags": "faststart"} if faststart and extension in (".mp4", ".mov") else {}
    # Timestamps in milliseconds (centiseconds for gif, its native unit) when given.
    if timestamps is not None:
        time_base = Fraction(1, 100) if codec == "gif" else Fraction(1, 1000)
        pts = [round(t / time_base) for t in timestamps]
    else:
        time_base = 1 / Fraction(fps).limit_denominator(1001)
        pts = list(range(len(frames)))
    with av.open(path, "w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        _encode_settings(stream, codec, gop)
        if rotation or hflip:
            stream.set_display_rotation(rotation, hflip=hflip)
        for array, stamp in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush frames the encoder held back
    return path


def write_audio_only(path: str | os.PathLike, seconds: float = 0.5) -> str:
    """Write a file with one audio stream and no video (AAC; Opus for webm/ogg/opus/mka)."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    codec = "libopus" if extension in (".webm", ".ogg", ".opus", ".mka") else "aac"
    rate = 48000
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame_size = stream.codec_context.frame_size or 960
        total = int(seconds * rate)
        tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(total) / rate).astype(np.float32)
        for start in range(0, total - frame_size + 1, frame_size):
            chunk = tone[start:start + frame_size][None]  # (channels=1, samples)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# Audio encoder per extension; a video container carries the same codec beside its video.
_AUDIO_CODECS = {
    ".wav": "pcm_s16le",
    ".flac": "flac",
    ".mp3": "libmp3lame",
    ".m4a": "aac",
    ".mp4": "aac",
    ".mov": "aac",
    ".mkv": "pcm_s16le",
    ".ogg": "libopus",
    ".opus": "libopus",
    ".webm": "libopus",
}


def tone(
    seconds: float, frequency: float = 440.0, rate: int = 48000, amplitude: float = 0.3,
    channels: int = 1,
) -> np.ndarray:
    """A sine tone as (channels, samples) float32, the same in every channel."""
    t = np.arange(round(seconds * rate)) / rate  # (samples,)
    wave = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return np.repeat(wave[None], channels, axis=0)


def _add_audio_stream(container, codec: str, rate: int, channels: int):
    """A new audio stream; add every stream before muxing starts (the header is written then)."""
    return container.add_stream(codec, rate=rate, layout={1: "mono", 2: "stereo"}[channels])


def _mux_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    """Encode (channels, samples) float32 into ``stream`` of ``container``.

    A resampler turns the float planes into the encoder's own sample format and frame size
    (aac 1024, mp3 1152, opus 960 samples); the rate stays ``rate``.
    """
    layout = stream.codec_context.layout.name
    frame_size = stream.codec_context.frame_size or 1024
    resampler = av.AudioResampler(
        format=stream.codec_context.format.name, layout=layout, rate=rate, frame_size=frame_size
    )
    source = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
    source.sample_rate, source.pts, source.time_base = rate, 0, Fraction(1, rate)
    for chunk in resampler.resample(source) + resampler.resample(None):
        container.mux(stream.encode(chunk))
    container.mux(stream.encode(None))  # flush what the encoder held back


def write_audio(path: str | os.PathLike, samples: np.ndarray, rate: int = 48000) -> str:
    """Write (channels, samples) float32 in [-1, 1] as an audio-only file; codec by extension
    (.wav pcm, .flac, .mp3, .m4a aac, .ogg/.opus opus)."""
    path = os.fspath(path)
    codec = _AUDIO_CODECS[os.path.splitext(path)[1].lower()]
    with av.open(path, "w") as container:
        stream = _add_audio_stream(container, codec, rate, samples.shape[0])
        _mux_audio(container, stream, samples, rate)
    return path


def write_video_with_audio(
    path: str | os.PathLike,
    frames: np.ndarray,
    samples: np.ndarray,
    rate: int = 48000,
    fps: float = 8,
) -> str:
    """A video with a sound track: (T, H, W, 3) uint8 ``frames`` (libx264, frame ``i`` at
    ``i / fps``) and (channels, samples) float32 ``samples`` at ``rate`` (aac in mp4/mov,
    pcm in mkv, opus in webm)."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    video_codec, pix_fmt = _VIDEO_CODECS[extension]
    _, height, width, _ = frames.shape
    with av.open(path, "w") as container:
        stream = container.add_stream(video_codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        _encode_settings(stream, video_codec, None)
        sound = _add_audio_stream(container, _AUDIO_CODECS[extension], rate, samples.shape[0])
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        _mux_audio(container, sound, samples, rate)
    return path


def write_image(
    path: str | os.PathLike, array: np.ndarray, exif_orientation: int | None = None
) -> str:
    """Save an (H, W), (H, W, 3) or (H, W, 4) uint8 array with PIL (lossless webp, JPEG q95).

    ``exif_orientation`` (1-8) stores that EXIF Orientation tag.
    """
    path = os.fspath(path)
    image = Image.fromarray(array)
    kwargs: dict = {}
    extension = os.path.splitext(path)[1].lower()
    if extension in (".jpg", ".jpeg"):
        kwargs["quality"] = 95
    elif extension == ".webp":
        kwargs["lossless"] = True
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation  # the Orientation tag
        kwargs["exif"] = exif.tobytes()
    image.save(path, **kwargs)
    return path


def write_text_file(path: str | os.PathLike, text: str = "this is a text file, not media\n") -> str:
    """Write plain text (e.g. to a path ending in .mp4, to test rejection)."""
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def truncate_file(path: str | os.PathLike, keep_fraction: float) -> int:
    """Cut ``path`` in place to its first ``keep_fraction`` of bytes; returns the new size."""
    path = os.fspath(path)
    size = int(os.path.getsize(path) * keep_fraction)
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return size
