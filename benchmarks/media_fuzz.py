"""The full hostile-media corpus through `aurora caption`'s path, with time and peak memory per file.

    python benchmarks/media_fuzz.py [--seeds 3] [--flips 24] [--cuts 16] [--rss-bound-mb 600] [--seconds-bound 30]

Generates the extreme-dimension corpus and, per seed, a fuzz corpus (truncations, byte flips, wrong
containers, audio-only, zero frames, special files) from `aurora.testing.hostile_media`, captions
every file with the bundled model in one subprocess (`aurora.testing.caption_probe`: per-file peak
RSS above the loaded model, seconds), and reports: outcomes (caption / one-line refusal / crash),
the slowest and the most memory-hungry files, and whether every file stayed within the bounds.
Exit status 1 when a file crashed, was refused with more than one line, or broke a bound.
The fast subset of the same corpus runs in the test suite (tests/test_media_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aurora.testing.hostile_media import extreme_corpus, fuzz_corpus  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--flips", type=int, default=24)
    parser.add_argument("--cuts", type=int, default=16)
    parser.add_argument("--rss-bound-mb", type=float, default=600.0)
    parser.add_argument("--seconds-bound", type=float, default=30.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "media_fuzz.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aurora-fuzz-") as folder:
        cases = extreme_corpus(os.path.join(folder, "extreme"))
        for seed in range(args.seeds):
            cases += fuzz_corpus(os.path.join(folder, f"fuzz{seed}"), seed=seed, flips=args.flips, cuts=args.cuts)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        done = subprocess.run([sys.executable, "-m", "aurora.testing.caption_probe",
                               "--warmup", str(ROOT / "examples" / "clip_00003.mp4"), *[c.path for c in cases]],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        report = json.loads(done.stdout)

    expect = {c.path: c for c in cases}
    problems = []
    for entry in report["results"]:
        case = expect[entry["path"]]
        entry["name"] = os.path.relpath(entry.pop("path"), folder)
        entry["expect"] = case.expect
        if entry["outcome"] == "crash":
            problems.append(f"{entry['name']}: crashed ({entry['message']})")
        elif entry["outcome"] == "refused" and "\n" in entry["message"]:
            problems.append(f"{entry['name']}: refusal on more than one line")
        elif case.expect in ("ok", "refused") and entry["outcome"] != case.expect:
            problems.append(f"{entry['name']}: {entry['outcome']}, expected {case.expect}")
        if (entry["peak_above_baseline_mb"] or 0) > args.rss_bound_mb:
            problems.append(f"{entry['name']}: peak {entry['peak_above_baseline_mb']} MB above the model")
        if entry["seconds"] > args.seconds_bound:
            problems.append(f"{entry['name']}: {entry['seconds']} s")
    results = report["results"]
    counts = {k: sum(e["outcome"] == k for e in results) for k in ("ok", "refused", "crash")}
    summary = {"files": len(results), **counts, "baseline_rss_mb": round(report["baseline_rss_mb"], 1),
               "max_peak_above_baseline_mb": max(e["peak_above_baseline_mb"] or 0 for e in results),
               "max_seconds": max(e["seconds"] for e in results), "bounds": {"rss_mb": args.rss_bound_mb,
               "seconds": args.seconds_bound}, "problems": problems}
    print(f"| files | captioned | refused (one line) | crashed | max peak above model | max seconds |\n"
          f"|---|---|---|---|---|---|\n| {summary['files']} | {counts['ok']} | {counts['refused']} | "
          f"{counts['crash']} | {summary['max_peak_above_baseline_mb']:.0f} MB | {summary['max_seconds']:.2f} |")
    for label, key in (("most memory", "peak_above_baseline_mb"), ("slowest", "seconds")):
        top = sorted(results, key=lambda e: -(e[key] or 0))[:5]
        print(f"\n{label}: " + ", ".join(f"{e['name']} ({e[key]})" for e in top))
    for problem in problems:
        print("PROBLEM:", problem)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(condense(summary, results), indent=1) + "\n")
    return 1 if problems else 0


def condense(summary: dict, results: list[dict]) -> dict:
    """What is worth keeping: the summary, the extreme files one by one, the ten slowest and most
    memory-hungry files, and how often each kind of refusal was given."""
    keep = ("name", "outcome", "seconds", "peak_above_baseline_mb", "message")
    brief = lambda e: {k: e[k] for k in keep if k in e}  # noqa: E731
    reasons: dict[str, dict] = {}
    for e in results:
        if e["outcome"] == "refused":
            reason = e["message"].split("': ", 1)[-1].split(";")[0][:80]  # without the file name
            entry = reasons.setdefault(reason, {"files": 0, "example": e["name"]})
            entry["files"] += 1
    return {"summary": summary,
            "extreme": [brief(e) for e in results if e["name"].startswith("extreme")],
            "slowest": [brief(e) for e in sorted(results, key=lambda e: -e["seconds"])[:10]],
            "most_memory": [brief(e) for e in sorted(results, key=lambda e: -(e["peak_above_baseline_mb"] or 0))[:10]],
            "refusals": dict(sorted(reasons.items(), key=lambda kv: -kv[1]["files"]))}


if __name__ == "__main__":
    sys.exit(main())
