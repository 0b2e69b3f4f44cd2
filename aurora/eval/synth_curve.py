"""`aurora eval synth --sweep`: the speed/quality curve of the token reducers on a synthetic split.

For each reducer ("tome" per frame in the encoder, "temporal" across frames, "both") and each
share of visual tokens (100/50/25/10/5/2% by default) it scores captions (`synth_eval.evaluate`,
one folder per reducer, resumable per clip) and times the first token on a few clips at
`ttft_frames` frames (one JSONL line per measurement, resumable too). The curve is written as
curve.json, curve.md and curve.png (accuracy against the share of tokens that really reached the
language model: ToMe's per-layer rule cannot go below about one token in six per frame in a
4-layer tower, so its 5% and 2% points sit where they land). 100% is the same model for every
reducer, so it is run once, under the first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.synth_eval import _finished, evaluate, read_split
from aurora.synth import CAPTION_PROMPTS
from aurora.vision.reduce import METHODS, check_ratio

SHARES = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02)


def sweep(model, data: str | Path, out: str | Path, reductions=METHODS, shares=SHARES, batch_size: int = 8,
          limit: int | None = None, num_frames: int | None = None, max_new_tokens: int | None = None,
          ttft_frames: int = 32, ttft_clips: int = 3, ttft_repeats: int = 3, progress: bool = True) -> dict:
    """Score and time every reducer at every share; returns (and writes) the curve."""
    shares = sorted({check_ratio(s) for s in shares} | {1.0}, reverse=True)
    for r in reductions:
        if r not in METHODS:
            raise ConfigError(f"reduction must be one of {METHODS}, got {r!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preset_method = model.preset.reducer.method
    summaries = {}
    try:
        for n, reduction in enumerate(reductions):
            model.preset.reducer.method = reduction
            ratios = shares if n == 0 else [s for s in shares if s < 1]
            summaries[reduction] = evaluate(model, data, out / reduction, ratios, batch_size=batch_size, limit=limit,
                                            max_new_tokens=max_new_tokens, num_frames=num_frames, progress=progress)
        timings = time_first_token(model, data, out / "ttft.jsonl", reductions, shares, ttft_frames, ttft_clips,
                                   ttft_repeats)
    finally:
        model.preset.reducer.method = preset_method
    curve = _curve(summaries, timings, reductions, shares)
    for reduction, points in curve["reductions"].items():  # 100% is the reference: no error of its own
        for share, point in points.items():
            point["relative_se"] = None if share == "1" else paired_relative_error(
                out / reductions[0] / "ratio_1.jsonl", out / reduction / f"ratio_{share}.jsonl")
    curve |= {"data": str(data), "model": model.name, "num_frames": num_frames or model.preset.media.num_frames,
              "clips": next(iter(summaries.values()))["results"]["1"]["n"], "ttft_frames": ttft_frames,
              "ttft_clips": ttft_clips, "ttft_repeats": ttft_repeats}
    (out / "curve.json").write_text(json.dumps(curve, indent=2) + "\n")
    (out / "curve.md").write_text(curve_table(curve))
    plot_curve(curve, out / "curve.png")
    return curve


def time_first_token(model, data, path: Path, reductions, shares, frames: int, clips: int, repeats: int) -> dict:
    """Median seconds to the first token (decode + preprocess + encode + prefill, and encode + prefill
    alone) per (reduction, share), over `clips` clips x `repeats` runs at `frames` frames; resumable."""
    records = read_split(data, clips)
    prompt = CAPTION_PROMPTS["detailed"]
    done = _finished(path)  # keys of the measurements already made (a torn last line is dropped)
    with open(path, "a") as sink:
        for record in records:  # a warm-up, so the first measurement pays no one-off costs
            model.caption(record["_path"], prompt=prompt, num_frames=frames, max_new_tokens=1)
            break
        for repeat in range(repeats):  # rounds over every setting, so a load change hits them alike
            for reduction in reductions:
                model.preset.reducer.method = reduction
                for share in shares:
                    for record in records:
                        key = f"{reduction}/{share:g}/{record['id']}/{repeat}"
                        if key in done:
                            continue
                        reply = model.caption(record["_path"], prompt=prompt, num_frames=frames,
                                              token_kept_ratio=share, max_new_tokens=1)
                        t = reply.timings
                        sink.write(json.dumps({"id": key, "reduction": reduction, "share": share,
                                               "ttft": t["decode"] + t["preprocess"] + t["encode"] + t["prefill"],
                                               "ttft_model": t["encode"] + t["prefill"],
                                               "visual_tokens": reply.visual_tokens[0]["language_model"],
                                               "at": time.time()}) + "\n")
                        sink.flush()
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    result = {}
    for reduction in reductions:
        for share in shares:
            mine = [x for x in lines if x["reduction"] == reduction and x["share"] == share]
            if mine:
                result[(reduction, share)] = {k: _median([x[k] for x in mine]) for k in ("ttft", "ttft_model")} | {
                    "visual_tokens": mine[0]["visual_tokens"]}
    return result


def paired_relative_error(full: Path, reduced: Path) -> float | None:
    """The standard error of (mean reduced accuracy / mean full accuracy) over the clips scored in
    both files: the same clips at 100% and reduced, so the clip-to-clip spread of difficulty
    cancels (the standard error of the mean per-clip difference, over the mean at 100%). None with
    fewer than two clips."""
    def overall(path):
        lines = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
        return {line["id"]: float(line["scores"]["overall"]) for line in lines}

    a, b = overall(full), overall(reduced)
    ids = sorted(a.keys() & b.keys())
    mean_full = sum(a[i] for i in ids) / len(ids) if ids else 0.0
    if len(ids) < 2 or mean_full == 0:
        return None
    diffs = [b[i] - a[i] for i in ids]
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return (variance / len(diffs)) ** 0.5 / mean_full


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _curve(summaries: dict, timings: dict, reductions, shares) -> dict:
    first = summaries[reductions[0]]["results"]["1"]
    full_tokens, full_accuracy = first["visual_tokens"], first["overall"]
    full_time = timings.get((reductions[0], 1.0), {})
    curve = {"full": {"overall": full_accuracy, "visual_tokens": full_tokens} | full_time, "reductions": {}}
    for reduction in reductions:
        points = {}
        for share in shares:
            r = summaries[reduction]["results"].get(f"{share:g}") or first
            t = timings.get((reduction, share), {})
            point = {"overall": r["overall"], "relative": r["overall"] / full_accuracy if full_accuracy else None,
                     "token_share": r["visual_tokens"] / full_tokens, "visual_tokens": r["visual_tokens"],
                     "aspects": {k: v for k, v in r.items() if k not in ("by_objects",) and isinstance(v, float)}}
            if t and full_time:
                point |= {"ttft": t["ttft"], "ttft_model": t["ttft_model"], "speedup": full_time["ttft"] / t["ttft"],
                          "speedup_model": full_time["ttft_model"] / t["ttft_model"],
                          "ttft_visual_tokens": t["visual_tokens"]}
            points[f"{share:g}"] = point
        curve["reductions"][reduction] = points
    return curve


def curve_table(curve: dict) -> str:
    """One row per reducer and share: accuracy, share of full accuracy (± its paired standard error),
    tokens, time to first token."""
    head = ("| reduction | asked | tokens kept | accuracy | of full | TTFT (ms) | speed-up | "
            "encode+prefill (ms) | speed-up |\n" + "|---" * 9 + "|\n")
    rows = []
    for reduction, points in curve["reductions"].items():
        for share, p in points.items():
            timing = (f"{1000 * p['ttft']:.0f} | {p['speedup']:.1f}x | {1000 * p['ttft_model']:.0f} | "
                      f"{p['speedup_model']:.1f}x") if "ttft" in p else "- | - | - | -"
            relative = "-" if p["relative"] is None else f"{100 * p['relative']:.1f}%"
            if p.get("relative_se") is not None:
                relative += f" ± {100 * p['relative_se']:.1f}"
            rows.append(f"| {reduction} | {100 * float(share):g}% | {100 * p['token_share']:.1f}% "
                        f"({p['visual_tokens']:.0f}) | {100 * p['overall']:.1f} | {relative} | {timing} |\n")
    return head + "".join(rows)


def plot_curve(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for reduction, points in curve["reductions"].items():
        xs = [100 * p["token_share"] for p in points.values()]
        ys = [100 * p["overall"] for p in points.values()]
        ax.plot(xs, ys, "o-", label=reduction)
    ax.set_xscale("log")
    ax.set_xlabel("visual tokens reaching the language model (% of all)")
    ax.set_ylabel("overall attribute accuracy (%)")
    ax.set_title(f"{Path(curve['data']).parent.name}: accuracy vs share of tokens ({curve['num_frames']} frames)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
