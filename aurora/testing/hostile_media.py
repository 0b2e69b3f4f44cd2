"""Generated hostile media: extreme declared dimensions, and a fuzz corpus of broken files.

``extreme_corpus`` writes tiny files whose headers declare huge or degenerate frames (a 35-byte
GIF with a 16000x16000 screen, a 1x100,000,000 PNG, 1-pixel strips, a .mov whose PNG frames say
16000x16000) next to large-but-allowed ones; each case says whether Aurora must caption it
("ok") or refuse it with one line ("refused"). ``fuzz_corpus`` derives truncations, byte flips,
wrong containers, audio-only, zero-frame and special files from valid clips; each must end in a
caption or a one-line refusal ("either"). Both are written without holding a large frame in
memory (PNGs are streamed row by row), so the generator itself stays small.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from dataclasses import dataclass

import av
import numpy as np

from aurora.testing.media import make_frames, write_audio_only, write_image, write_video


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    expect: str  # "ok", "refused" or "either"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_stream(path: str, width: int, height: int, bit_depth: int = 8, colour: int = 2,
                     rows: int | None = None) -> str:
    """A PNG of ``width`` x ``height`` (colour type 2 RGB, 0 greyscale), pixels a smooth pattern,
    compressed row by row. ``rows`` < height writes only that many rows (the header still
    declares ``height``): a file that declares more than it holds."""
    channels = 3 if colour == 2 else 1
    row_bytes = (width * channels * bit_depth + 7) // 8
    pattern = (np.arange(row_bytes) * 7 % 251).astype(np.uint8).tobytes()
    compressor = zlib.compressobj(9)
    body = []
    for y in range(height if rows is None else rows):
        body.append(compressor.compress(b"\x00" + (pattern if y % 64 < 32 else pattern[::-1])))
    body.append(compressor.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)))
        f.write(_chunk(b"IDAT", b"".join(body)))
        f.write(_chunk(b"IEND", b""))
    return path


def write_gif_screen(path: str, screen: int) -> str:
    """A GIF whose logical screen is ``screen`` x ``screen`` holding one 1x1 image (35 bytes)."""
    data = (
        b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0x80, 0, 0)  # 2-colour global table
        + b"\x00\x00\x00\xff\xff\xff"
        + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0)  # image descriptor: 1x1 at (0, 0)
        + b"\x02\x02\x44\x01\x00"  # LZW code size 2, one sub-block, end
        + b";"
    )
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_png_mov(path: str, width: int = 16, height: int = 16, frames: int = 4,
                  claim: tuple[int, int] | None = None) -> str:
    """A .mov of PNG-coded frames; ``claim`` rewrites every frame's PNG header to say
    (width, height) while the data stays small (the decoder would allocate the claim)."""
    with av.open(path, "w") as container:
        stream = container.add_stream("png", rate=4)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        for i in range(frames):
            array = np.full((height, width, 3), 40 * i % 256, np.uint8)
            array[:, : width // 2] = 255 - array[:, : width // 2]
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    if claim is not None:
        data = bytearray(open(path, "rb").read())
        at = data.find(b"IHDR")
        while at >= 0:
            data[at + 4 : at + 12] = struct.pack(">II", *claim)
            at = data.find(b"IHDR", at + 4)
        with open(path, "wb") as f:
            f.write(data)
    return path


def _solid_video(path: str, height: int, width: int, frames: int = 4, codec: str | None = None) -> str:
    array = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        array[i] = (37 * i) % 256
        array[i, : height // 2, : width // 2] = 255 - (37 * i) % 256
    return write_video(path, array, fps=4, codec=codec)


def extreme_corpus(folder: str, large: bool = True) -> list[Case]:
    """Files of extreme declared dimensions. ``large`` adds the allowed-but-big ones (a 36 MP
    PNG and JPEG, a 4K mp4, a 4000x4000 PNG .mov) that take a few seconds to write and read."""
    os.makedirs(folder, exist_ok=True)
    j = lambda name: os.path.join(folder, name)  # noqa: E731
    cases = [
        Case("gif_screen_16000", write_gif_screen(j("gif_screen_16000.gif"), 16000), "refused"),
        Case("png_12000_1bit", write_png_stream(j("png_12000_1bit.png"), 12000, 12000, 1, 0, rows=64),
             "refused"),
        Case("png_1x100000000", write_png_stream(j("png_1x100000000.png"), 1, 100_000_000, rows=1),
             "refused"),
        Case("png_6000x1", write_png_stream(j("png_6000x1.png"), 6000, 1), "refused"),
        Case("png_1x6000", write_png_stream(j("png_1x6000.png"), 1, 6000), "refused"),
        Case("png_32x1", write_png_stream(j("png_32x1.png"), 32, 1), "ok"),
        Case("png_1x1", write_png_stream(j("png_1x1.png"), 1, 1), "ok"),
        Case("mp4_2x2000", _solid_video(j("mp4_2x2000.mp4"), 2000, 2), "refused"),
        Case("mp4_64x2", _solid_video(j("mp4_64x2.mp4"), 2, 64), "ok"),
        Case("mov_png_claims_16000", write_png_mov(j("mov_png_claims_16000.mov"), claim=(16000, 16000)),
             "refused"),
        Case("mov_png_claims_6000x1", write_png_mov(j("mov_png_claims_6000x1.mov"), claim=(6000, 1)),
             "refused"),
    ]
    if large:
        cases += [
            Case("png_6000x6000", write_png_stream(j("png_6000x6000.png"), 6000, 6000), "ok"),
            Case("png_6000x6000_16bit_grey",
                 write_png_stream(j("png_6000x6000_16bit_grey.png"), 6000, 6000, 16, 0), "ok"),
            Case("jpg_7000x5000", _big_jpeg(j("jpg_7000x5000.jpg"), 7000, 5000), "ok"),
            Case("mp4_3840x2160", _solid_video(j("mp4_3840x2160.mp4"), 2160, 3840), "ok"),
            Case("mov_png_4000", write_png_mov(j("mov_png_4000.mov"), 4000, 4000), "ok"),
            Case("png_7000x7000", write_png_stream(j("png_7000x7000.png"), 7000, 7000), "refused"),
        ]
    return cases


def _big_jpeg(path: str, width: int, height: int) -> str:
    from PIL import Image

    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image.save(path, quality=80)
    return path


def fuzz_corpus(folder: str, seed: int = 0, flips: int = 8, cuts: int = 6) -> list[Case]:
    """Broken and odd files derived from valid small clips: each must caption or be refused
    with one line. ``flips`` byte-flip and ``cuts`` truncation variants per source file."""
    os.makedirs(folder, exist_ok=True)
    j = lambda name: os.path.join(folder, name)  # noqa: E731
    rng = random.Random(seed)
    frames = make_frames(12, 32, 32, seed=seed)
    sources = [
        write_video(j("src.mp4"), frames, fps=8, gop=4),
        write_video(j("src.webm"), frames, fps=8),
        write_video(j("src.gif"), frames, fps=8),
        write_video(j("src.avi"), frames, fps=8),
        write_image(j("src.png"), frames[0]),
        write_image(j("src.jpg"), frames[0]),
    ]
    cases = [Case(os.path.basename(p), p, "ok") for p in sources]
    for source in sources:
        data = open(source, "rb").read()
        stem, ext = os.path.splitext(os.path.basename(source))
        for k in range(cuts):
            keep = rng.randint(0, len(data) - 1)
            cases.append(_write(j(f"{stem}_cut{k}{ext}"), data[:keep]))
        for k in range(flips):
            mutated = bytearray(data)
            for _ in range(rng.choice((1, 4, 32))):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cases.append(_write(j(f"{stem}_flip{k}{ext}"), bytes(mutated)))
    mp4 = open(sources[0], "rb").read()
    png = open(sources[4], "rb").read()
    cases += [
        _write(j("mp4_named_mkv.mkv"), mp4),  # wrong container extension, still decodable
        _write(j("mp4_named_gif.gif"), mp4),
        _write(j("png_named_mp4.mp4"), png),
        _write(j("mp4_named_png.png"), mp4),
        _write(j("zeros.mp4"), bytes(4096)),
        Case("unknown_codec.mp4", _write(j("unknown_codec.mp4"), mp4.replace(b"avc1", b"zzzz")).path, "refused"),
        _write(j("empty.mp4"), b""),
        _write(j("text.png"), b"not an image\n"),
        Case("audio_only.mp4", write_audio_only(j("audio_only.mp4")), "refused"),
        Case("audio_only.webm", write_audio_only(j("audio_only.webm")), "refused"),
        Case("zero_frames.mkv", _zero_frames(j("zero_frames.mkv")), "refused"),
        Case("directory.mp4", _directory(j("directory.mp4")), "refused"),
        Case("symlink_loop.mp4", _symlink_loop(j("symlink_loop.mp4")), "refused"),
        Case("dangling.mp4", _dangling(j("dangling.mp4")), "refused"),
    ]
    return cases


def _write(path: str, data: bytes) -> Case:
    with open(path, "wb") as f:
        f.write(data)
    return Case(os.path.basename(path), path, "either")


def _zero_frames(path: str) -> str:
    """A Matroska header with one video track and no frame in it."""
    with av.open(path, "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()  # writes the header even though no packet follows
    assert os.path.getsize(path) > 0
    return path


def _directory(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _symlink_loop(path: str) -> str:
    if not os.path.lexists(path):
        os.symlink(os.path.basename(path), path)
    return path


def _dangling(path: str) -> str:
    if not os.path.lexists(path):
        os.symlink("does-not-exist.mp4", path)
    return path
