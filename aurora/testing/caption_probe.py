"""Caption many files in one process and report, per file, the outcome and the peak memory.

    python -m aurora.testing.caption_probe [--model PATH] [--max-new-tokens 4] FILE... > report.json

Runs the path ``aurora caption`` runs (``model.caption``): an ``AuroraError`` is a refusal
(its message is recorded and must be one line), anything else a crash. Peak RSS is measured per
file (Linux: /proc/self/clear_refs resets the high-water mark) relative to the RSS after the model
is loaded and has captioned one ordinary clip. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback


def _rss_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--warmup", default=None, help="an ordinary clip captioned before measuring")
    args = parser.parse_args(argv)

    import torch

    import aurora
    from aurora.errors import AuroraError

    torch.set_num_threads(1)
    model = aurora.load(args.model) if args.model else aurora.load()
    if args.warmup:
        model.caption(args.warmup, max_new_tokens=args.max_new_tokens)
    baseline = _rss_mb("VmRSS")
    resettable = _reset_peak()
    results = []
    for path in args.files:
        _reset_peak()
        began = time.perf_counter()
        entry: dict = {"path": path}
        try:
            reply = model.caption(path, max_new_tokens=args.max_new_tokens)
            entry.update(outcome="ok", caption=reply.text)
        except AuroraError as e:
            entry.update(outcome="refused", message=str(e))
        except Exception as e:  # a bug: what the CLI would show as a traceback
            entry.update(outcome="crash", message=f"{type(e).__name__}: {e}",
                         traceback=traceback.format_exc(limit=6))
        entry["seconds"] = round(time.perf_counter() - began, 3)
        peak = _rss_mb("VmHWM")
        entry["peak_above_baseline_mb"] = round(peak - baseline, 1) if peak and baseline else None
        results.append(entry)
    json.dump({"baseline_rss_mb": baseline, "per_file_peaks": resettable, "results": results},
              sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
