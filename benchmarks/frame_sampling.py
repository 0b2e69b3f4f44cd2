"""Frame sampling speed: 8 / 16 / 32 uniformly sampled frames from a 10-minute 720p H.264 clip.

    python benchmarks/frame_sampling.py [--minutes 10] [--clip PATH]

The script writes the clip once (libx264, keyframe every 250 frames, 25 fps) into a cache folder.
Compared: decoding every frame with PyAV and keeping the sampled ones (what a naive loader does),
decord's `VideoReader.get_batch` (if installed), and `aurora.media.load_video`. All return the same
frame indices (AuroraCap's linspace rule).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import av
import numpy as np
from _harness import case_main, parser, run_cases, save, table, timed

from aurora import media


def make_clip(path: Path, minutes: float, fps: int = 25, width: int = 1280, height: int = 720) -> Path:
    """A moving gradient with noise: cheap to encode, not trivially compressible."""
    if path.is_file():
        return path
    tmp = path.with_suffix(".partial.mp4")
    frames = int(minutes * 60 * fps)
    yy, xx = np.mgrid[:height, :width]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 24, (16, height, width), dtype=np.uint8)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": "250", "preset": "ultrafast", "crf": "28"}
        for i in range(frames):
            rgb = np.empty((height, width, 3), np.uint8)
            rgb[..., 0] = (xx + 4 * i) % 256
            rgb[..., 1] = (yy + 2 * i) % 256
            rgb[..., 2] = noise[i % 16]
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def decode_everything(path: str, num_frames: int) -> np.ndarray:
    """Decode every frame in order, keeping (and converting) only the sampled ones."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        keep = set(media.uniform_indices(stream.frames, num_frames))
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i in keep]
    return np.stack(frames)


def decord_batch(path: str, num_frames: int) -> np.ndarray:
    import decord

    reader = decord.VideoReader(path)
    return reader.get_batch(media.uniform_indices(len(reader), num_frames)).asnumpy()


def run_case(case: dict) -> dict:
    fn = {"decode-everything": decode_everything, "decord": decord_batch,
          "aurora": lambda p, n: media.load_video(p, num_frames=n).array}[case["impl"]]
    frames = fn(case["clip"], case["num_frames"])
    timing = timed(lambda: fn(case["clip"], case["num_frames"]), warmup=0, repeats=case["repeats"])
    return {**timing, "shape": list(frames.shape), "checksum": int(frames[:, ::64, ::64].astype(np.int64).sum())}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--clip", help="use this clip instead of generating one")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    cache = Path(os.environ.get("AURORA_BENCH_CACHE", Path(tempfile.gettempdir()) / "aurora-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    clip = args.clip or str(make_clip(cache / f"clip_{args.minutes:g}min_720p.mp4", args.minutes))
    try:
        import decord  # noqa: F401

        impls = ["decode-everything", "decord", "aurora"]
    except ImportError:
        impls = ["decode-everything", "aurora"]
    rows = []
    for n in (8, 16, 32):
        cases = [dict(impl=i, clip=clip, num_frames=n, repeats=1 if i == "decode-everything" else args.repeats)
                 for i in impls]
        results = run_cases(__file__, cases)
        base = results[0]["median_s"]
        sums = {r["checksum"] for r in results if r["case"]["impl"] != "decode-everything"}
        for r in results:
            rows.append({"frames": n, "impl": r["case"]["impl"], "seconds": r["median_s"],
                         "x faster than decode-everything": base / r["median_s"], "peak RSS MB": r["peak_rss_mb"],
                         "same frames": r["checksum"] == results[0]["checksum"]})
        del sums
    print(table(rows, ["frames", "impl", "seconds", "x faster than decode-everything", "peak RSS MB", "same frames"]))
    print("saved", save("frame_sampling", rows, args.out))


if __name__ == "__main__":
    if not case_main(run_case):
        main()
