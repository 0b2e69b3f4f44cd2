"""Aurora's synthetic benchmark (`aurora.eval.synth_eval`): attribute accuracy of captions of
generated clips, optionally swept over token kept ratios. It keeps its own loop and flags."""

from __future__ import annotations

SUMMARY = "synth: attribute accuracy on a synthetic split (aurora synth)"
JUDGED = False


def add_arguments(p) -> None:
    from aurora.argtypes import positive_int
    from aurora.model_flags import add_load_flags

    p.add_argument("--data", required=True, help="the split's JSONL, e.g. data/synth/test.jsonl")
    p.add_argument("--out", required=True, help="results folder (per-clip JSONL, summary.json, table.md, plot.png)")
    p.add_argument("--token-kept-ratio", "--token_kept_ratio", dest="ratios", default=None,
                   help="one ratio or a comma-separated sweep, e.g. 0.1,0.2,0.4,1.0 (default: the preset's)")
    p.add_argument("--num-frames", "--num_frm", dest="num_frames", type=positive_int)
    p.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=positive_int)
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=8)
    p.add_argument("--limit", type=positive_int, help="only the first N clips")
    add_load_flags(p)
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out (a rerun always does: clips already scored are skipped)")


def run(args) -> int:
    from pathlib import Path

    from aurora.model_flags import load_model
    from aurora.errors import ConfigError
    from aurora.eval.synth_eval import evaluate

    model = load_model(args)
    if args.ratios is None:
        ratios = [model.preset.reducer.token_kept_ratio]
    else:
        try:
            ratios = [float(x) for x in args.ratios.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--token-kept-ratio takes numbers in (0, 1], got {args.ratios!r}") from None
    summary = evaluate(model, args.data, args.out, ratios, batch_size=args.batch_size, limit=args.limit,
                       max_new_tokens=args.max_new_tokens, num_frames=args.num_frames)
    print((Path(args.out) / "table.md").read_text(), end="")
    return 0 if summary["results"] else 1
