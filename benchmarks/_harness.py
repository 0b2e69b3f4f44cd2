"""Shared benchmark plumbing: each case runs in its own process (so its peak RSS is its own),
timed after warm-up as the median of repeats; results print as a table and are saved as JSON.

Timings live here, never in tests: these machines are noisy, so every script compares against
its baseline in the same run and reports ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def timed(fn, warmup: int = 1, repeats: int = 3) -> dict:
    """Median / min seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_cases(script: str, cases: list[dict], timeout: int = 1800) -> list[dict]:
    """Run `script --case JSON` once per case in a fresh process; collect the JSON it prints."""
    results = []
    for case in cases:
        proc = subprocess.run([sys.executable, script, "--case", json.dumps(case)], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise SystemExit(f"case {case} failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  done: {case}", file=sys.stderr, flush=True)
    return results


def case_main(run_case) -> bool:
    """If called as `--case JSON`, run that one case, print its JSON result, and return True."""
    if "--case" not in sys.argv:
        return False
    case = json.loads(sys.argv[sys.argv.index("--case") + 1])
    result = run_case(case)
    result.update(case=case, peak_rss_mb=round(peak_rss_mb(), 1))
    print(json.dumps(result))
    return True


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|\n"
    body = "".join("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |\n" for row in rows)
    return head + body


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def save(name: str, rows: list[dict], out: str | None) -> Path:
    path = Path(out or f"benchmarks/results/{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), "rows": rows}, indent=2) + "\n")
    return path


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--out", help="JSON output path (default benchmarks/results/NAME.json)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p
