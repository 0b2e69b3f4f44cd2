"""Batch captioning throughput: `aurora caption-batch` against what users would otherwise run.

    python benchmarks/batch_captioning.py [--clips 64] [--cli-clips 8] [--batch-size 16]

On the same clips (the default model's test split, as `aurora synth` makes them, 64x64, 16 frames)
with the bundled default model, in videos/s:

- `aurora caption` called once per clip (a shell loop: each call starts Python and loads the model),
  timed on the first --cli-clips clips;
- a plain Python loop over `model.caption` (the model loaded once): the baseline of the ratios; and
  the same loop with torch limited to 1 thread (what the batch job's thread rule does, see below);
- `caption_dataset` (what `aurora caption-batch` runs), local engine, decoding inline (0 workers),
  in 1 and in 2 worker processes;
- the Ray engine on a local Ray cluster (1 captioning actor; the cluster is started before timing,
  the actor's model load is inside it).

On the CPU the local engine gives torch the cores its decoding workers leave, and Ray gives an
actor the CPUs it reserved (1 here): on a busy 2-core machine torch's 2 default threads spin against
everything else, so the 1-thread loop separates that effect from batching and overlap.

Where time goes: the rows' per-stage seconds (decode, preprocess, encode; prefill and generate
shared over a batch) summed over clips. Every case runs in its own process; captions are compared
with the plain loop's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import case_main, parser, run_cases, save, table

STAGES = ("decode", "preprocess", "encode", "prefill", "generate")


def make_clips(folder: Path, count: int) -> list[str]:
    from aurora.synth import SynthConfig
    from aurora.synth.dataset import scene_for, write_mp4
    from aurora.synth.render import render

    config = SynthConfig(num_clips=max(count, 10), seed=1, splits=(0, 0, 1))  # the default model's test seed
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"clip_{index:05d}.mp4"
        if not path.is_file():
            write_mp4(path, render(scene_for(index, config), config), config.fps)
        paths.append(str(path))
    return paths


def run_case(case: dict) -> dict:
    clips = make_clips(Path(case["folder"]), case["clips"])
    if case["impl"] == "cli-loop":
        start = time.perf_counter()
        for clip in clips:
            subprocess.run([sys.executable, "-m", "aurora.cli", "caption", clip], check=True, capture_output=True)
        return {"seconds": time.perf_counter() - start, "videos": len(clips)}

    import aurora
    from aurora.batch import caption_dataset

    if case.get("threads"):
        import torch

        torch.set_num_threads(case["threads"])
    model = aurora.load(None, device="cpu") if case["impl"] != "ray" else None
    if model is not None:
        model.caption(clips[0])  # warm-up
    if case["impl"] == "plain-loop":
        start = time.perf_counter()
        replies = [model.caption(clip) for clip in clips]
        seconds = time.perf_counter() - start
        stages = {stage: sum(r.timings[stage] for r in replies) for stage in STAGES}
        return {"seconds": seconds, "videos": len(clips), "stages": stages, "captions": [r.text for r in replies],
                "tokens": sum(r.generated_tokens for r in replies)}
    if case["impl"] == "ray":
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    start = time.perf_counter()
    rows = caption_dataset(clips, model=model, batch_size=case["batch_size"], workers=case["workers"],
                           engine="ray" if case["impl"] == "ray" else "local", progress=False)
    seconds = time.perf_counter() - start
    by_path = {row["path"]: row for row in rows}
    rows = [by_path[clip] for clip in clips]
    stages = {stage: sum(row["timings"][stage] for row in rows) for stage in STAGES}
    return {"seconds": seconds, "videos": len(clips), "stages": stages, "captions": [row["caption"] for row in rows],
            "tokens": sum(row["generated_tokens"] for row in rows), "errors": sum(row["error"] is not None for row in rows)}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--cli-clips", dest="cli_clips", type=int, default=8, help="clips for the `aurora caption` loop")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    p.add_argument("--no-ray", dest="ray", action="store_false")
    args = p.parse_args()
    cache = Path(os.environ.get("AURORA_BENCH_CACHE", Path(tempfile.gettempdir()) / "aurora-bench"))
    folder = str(cache / "batch_clips")
    make_clips(Path(folder), args.clips)
    cases = [dict(impl="plain-loop", folder=folder, clips=args.clips),
             dict(impl="plain-loop", folder=folder, clips=args.clips, threads=1),
             dict(impl="cli-loop", folder=folder, clips=args.cli_clips)]
    cases += [dict(impl="caption-batch", folder=folder, clips=args.clips, workers=w, batch_size=args.batch_size)
              for w in (0, 1, 2)]
    if args.ray:
        cases.append(dict(impl="ray", folder=folder, clips=args.clips, workers=1, batch_size=args.batch_size))
    results = run_cases(__file__, cases, timeout=3600)
    base = results[0]
    base_rate = base["videos"] / base["seconds"]
    rows = []
    for r in results:
        case = r["case"]
        name = case["impl"] + (f" ({case['workers']} workers)" if case["impl"] == "caption-batch" else "")
        name += f" ({case['threads']} torch thread)" if case.get("threads") else ""
        rate = r["videos"] / r["seconds"]
        row = {"case": name, "videos": r["videos"], "seconds": r["seconds"], "videos/s": rate,
               "x plain loop": rate / base_rate, "peak RSS MB": r["peak_rss_mb"]}
        if "stages" in r:
            row.update({f"{stage} s": r["stages"][stage] for stage in STAGES})
            row["tokens/s"] = r["tokens"] / r["seconds"]
            row["same captions"] = sum(a == b for a, b in zip(r["captions"], base["captions"]))
        rows.append(row)
    columns = ["case", "videos", "seconds", "videos/s", "x plain loop", "tokens/s", "same captions",
               *[f"{stage} s" for stage in STAGES], "peak RSS MB"]
    print(table(rows, columns))
    print("saved", save("batch_captioning", rows, args.out))


if __name__ == "__main__":
    if not case_main(run_case):
        main()
