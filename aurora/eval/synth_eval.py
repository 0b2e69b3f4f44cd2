"""`aurora eval synth`: caption a synthetic split at one or more token kept ratios and score the
captions against the clips' exact attributes.

Per ratio, one JSONL line per clip is appended as soon as it is scored (`ratio_<r>.jsonl`), so a
killed run resumes where it stopped. The summary JSON holds per-aspect accuracy, latency and the
run's configuration, and the same accuracies split by how many objects a clip holds (where
captioners usually fail: naming each object's own attributes, not the scene's); a markdown table
and a PNG plot show accuracy and latency against the ratio.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm.auto import tqdm

import aurora
from aurora.errors import ConfigError
from aurora.eval.synth_score import ASPECTS, LONG_ASPECTS, score, summarise
from aurora.synth import CAPTION_PROMPTS


def read_split(path: str | Path, limit: int | None = None) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: generate a split with `aurora synth` first")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        record["_path"] = str(path.parent / record["video"])
    return records[:limit] if limit else records


def evaluate(model, data: str | Path, out: str | Path, ratios: list[float], batch_size: int = 8,
             limit: int | None = None, max_new_tokens: int | None = None, num_frames: int | None = None,
             progress: bool = True) -> dict:
    """Score `model` on a split at every ratio; returns (and writes) the summary."""
    for ratio in ratios:
        if not 0 < ratio <= 1:
            raise ConfigError(f"token kept ratio must be in (0, 1], got {ratio}")
    records = read_split(data, limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prompt = CAPTION_PROMPTS["detailed"]
    results = {}
    for ratio in ratios:
        path = out / f"ratio_{ratio:g}.jsonl"
        done = _finished(path)
        pending = [r for r in records if r["id"] not in done]
        bar = tqdm(total=len(records), initial=len(records) - len(pending), disable=not progress,
                   desc=f"ratio {ratio:g}", unit="clip", dynamic_ncols=True)
        with open(path, "a") as sink:
            for start in range(0, len(pending), batch_size):
                batch = pending[start : start + batch_size]
                began = time.perf_counter()
                replies = model.caption_batch([r["_path"] for r in batch], prompt=prompt, token_kept_ratio=ratio,
                                              max_new_tokens=max_new_tokens, num_frames=num_frames)
                seconds = (time.perf_counter() - began) / len(batch)
                for record, reply in zip(batch, replies):
                    scores = score(record["attributes"], reply.text)
                    line = {"id": record["id"], "ratio": ratio, "caption": reply.text,
                            "reference": record["captions"]["detailed"],
                            "scores": {k: scores[k] for k in ASPECTS + LONG_ASPECTS + ("overall",) if k in scores},
                            "seconds_per_clip": seconds, "visual_tokens_per_frame": reply.visual_tokens_per_frame[0],
                            "visual_tokens": reply.visual_tokens[0], "timings": reply.timings,
                            "reduction": model.reduction, "generated_tokens": reply.generated_tokens}
                    sink.write(json.dumps(line) + "\n")
                sink.flush()
                bar.update(len(batch))
        bar.close()
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        objects = {r["id"]: len(r["attributes"]["objects"]) for r in records}
        lines = [line for line in lines if line["id"] in objects]
        by_objects = {}
        for count in sorted(set(objects[line["id"]] for line in lines)):
            by_objects[str(count)] = summarise([line["scores"] for line in lines if objects[line["id"]] == count])
        results[f"{ratio:g}"] = summarise([line["scores"] for line in lines]) | {
            "seconds_per_clip": sum(line["seconds_per_clip"] for line in lines) / len(lines),
            "visual_tokens_per_frame": lines[0]["visual_tokens_per_frame"],
            "by_objects": by_objects,
        } | _tokens_and_latency(lines)
    summary = {
        "benchmark": "synth",
        "data": str(data),
        "model": model.name,
        "reduction": model.reduction,
        "prompt": prompt,
        "num_frames": num_frames or model.preset.media.num_frames,
        "batch_size": batch_size,
        "aurora_version": aurora.__version__,
        "results": results,
    }
    if len(results) > 1:
        best = max(r["overall"] for r in results.values())
        for r in results.values():
            r["relative_to_best"] = r["overall"] / best if best else 0.0
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(markdown_table(results))
    if len(results) > 1:
        plot(results, out / "plot.png")
    return summary


def _tokens_and_latency(lines: list[dict]) -> dict:
    """Mean visual tokens per clip reaching the language model (and patches in), and the median
    time to first token: with decoding and preprocessing, and the model's part alone (encode + prefill)."""
    timed = [line for line in lines if "timings" in line and "visual_tokens" in line]
    if not timed:
        return {}
    def median(values):
        values = sorted(values)
        return values[len(values) // 2]
    stages = ("decode", "preprocess", "encode", "prefill")
    return {
        "visual_tokens": sum(line["visual_tokens"]["language_model"] for line in timed) / len(timed),
        "patches": sum(line["visual_tokens"]["patches"] for line in timed) / len(timed),
        "ttft": median([sum(line["timings"][s] for s in stages) for line in timed]),
        "ttft_model": median([line["timings"]["encode"] + line["timings"]["prefill"] for line in timed]),
    }


def _finished(path: Path) -> set[str]:
    """Ids already scored in a per-ratio JSONL (a torn last line from a kill is dropped)."""
    if not path.is_file():
        return set()
    good, done = [], set()
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        good.append(line)
        done.add(record["id"])
    path.write_text("".join(line + "\n" for line in good))
    return done


def markdown_table(results: dict) -> str:
    """The accuracy table, then the same per number of objects in the clip."""
    columns = ("overall",) + ASPECTS + tuple(a for a in LONG_ASPECTS if any(a in r for r in results.values()))
    ordered = sorted(results.items(), key=lambda item: float(item[0]))
    head = "| ratio | tokens/frame | " + " | ".join(columns) + " | s/clip |\n"
    head += "|---" * (len(columns) + 3) + "|\n"
    rows = "".join(
        f"| {ratio} | {r['visual_tokens_per_frame']} | " + " | ".join(f"{100 * r[c]:.1f}" if c in r else "-" for c in columns)
        + f" | {r['seconds_per_clip']:.3f} |\n"
        for ratio, r in ordered
    )
    split = "\n| ratio | objects | clips | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 3) + "|\n"
    split += "".join(
        f"| {ratio} | {count} | {s['n']} | " + " | ".join(f"{100 * s[c]:.1f}" if c in s else "-" for c in columns) + " |\n"
        for ratio, r in ordered for count, s in r.get("by_objects", {}).items()
    )
    return head + rows + split


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = sorted(results, key=float)
    x = [float(r) for r in ratios]
    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(x, [100 * results[r]["overall"] for r in ratios], "o-", color="tab:blue", label="accuracy")
    left.set_xlabel("token kept ratio")
    left.set_ylabel("overall attribute accuracy (%)", color="tab:blue")
    right = left.twinx()
    right.plot(x, [1000 * results[r]["seconds_per_clip"] for r in ratios], "s--", color="tab:red", label="latency")
    right.set_ylabel("latency per clip (ms)", color="tab:red")
    left.set_title("Synthetic benchmark: accuracy and latency vs. token merging")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(model_path, data, out, ratios, device="auto", dtype="auto", **kwargs) -> dict:
    model = aurora.load(model_path, device=device, dtype=dtype)
    return evaluate(model, data, out, ratios, **kwargs)
