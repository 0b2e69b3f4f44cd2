"""`aurora caption-batch INPUT --out RESULTS`: the batch job's flags, over `caption_dataset`.

`add_parser(subparsers)` adds the subcommand; user mistakes raise `ConfigError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys

from aurora.argtypes import count, positive_float, positive_int, ratio
from aurora.model_flags import add_load_flags, add_reduction_flag, load_kwargs


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "caption-batch", help="caption every video of a data set into JSONL/parquet (resumable; local or Ray)",
        description="Caption every input (a directory, a list of paths/URLs, or a CSV/JSONL/parquet column) into "
                    "one row per input, written as rows finish; --resume continues a killed job.")
    p.add_argument("input", help="directory (searched recursively), text file of paths/URLs, or .csv/.jsonl/.parquet table")
    p.add_argument("--out", required=True, help="results file: .jsonl or .parquet")
    p.add_argument("--column", help="the table column holding paths/URLs (default: path)")
    add_load_flags(p, branch_files=False)  # Video-LLaMA: a video_llama.json in the decoder directory
    p.add_argument("--prompt", help="default: the model's preset")
    p.add_argument("--num-frames", dest="num_frames", type=positive_int, help="frames per video (default: preset)")
    p.add_argument("--fps", type=positive_float, help="sample at this many frames per second (capped by --num-frames)")
    p.add_argument("--token-kept-ratio", dest="token_kept_ratio", type=ratio, help="in (0, 1] (default: preset)")
    add_reduction_flag(p)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=positive_int, help="default: preset")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=16,
                   help="inputs per generate call; halved when a batch does not fit in memory (default 16)")
    p.add_argument("--workers", type=count, default=None,
                   help="local: decoding processes (0 = decode inline; default 1); ray: captioning actors (default 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="ray: the cluster to join, e.g. auto (default: start a local one)")
    p.add_argument("--resume", action="store_true", help="continue the job that wrote --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aurora.batch.job import caption_dataset

    rows = caption_dataset(
        args.input, args.out, model=args.model, prompt=args.prompt, num_frames=args.num_frames, fps=args.fps,
        token_kept_ratio=args.token_kept_ratio, reduction=args.reduction, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        workers=1 if args.workers is None else args.workers, engine=args.engine, address=args.address,
        column=args.column, resume=args.resume, progress=args.progress, **load_kwargs(args),
    )
    failed = sum(row["error"] is not None for row in rows)
    print(f"{len(rows) - failed} captioned, {failed} failed: {args.out}", file=sys.stderr)
    return 0
