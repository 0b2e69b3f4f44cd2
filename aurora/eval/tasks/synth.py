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
    p.add_argument("--reduction", dest="reductions", default=None,
                   help="token reducer: tome, temporal, both or reuse (a comma-separated list with --sweep; "
                        "default: the preset's, all four with --sweep)")
    p.add_argument("--sweep", action="store_true",
                   help="the speed/quality curve: every reducer at 100/50/25/10/5/2%% of the tokens (or the "
                        "--token-kept-ratio list), accuracy and time to first token -> curve.json, curve.md, curve.png")
    p.add_argument("--ttft-frames", dest="ttft_frames", type=positive_int, default=32,
                   help="frames per clip when timing the first token in a sweep (default 32)")
    p.add_argument("--ttft-clips", dest="ttft_clips", type=positive_int, default=3,
                   help="clips timed per setting in a sweep (default 3, each 3 times; the median counts)")
    add_load_flags(p)
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out (a rerun always does: clips already scored are skipped)")


def run(args) -> int:
    from pathlib import Path

    from aurora.model_flags import load_model
    from aurora.errors import ConfigError
    from aurora.eval.synth_eval import evaluate

    from aurora.eval.synth_curve import SHARES, sweep
    from aurora.vision.reduce import METHODS

    model = load_model(args)
    if args.ratios is None:
        ratios = list(SHARES) if args.sweep else [model.preset.reducer.token_kept_ratio]
    else:
        try:
            ratios = [float(x) for x in args.ratios.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--token-kept-ratio takes numbers in (0, 1], got {args.ratios!r}") from None
    reductions = [x.strip() for x in (args.reductions or "").split(",") if x.strip()]
    for reduction in reductions:
        if reduction not in METHODS:
            raise ConfigError(f"--reduction takes {', '.join(METHODS)}, got {reduction!r}")
    if args.sweep:
        sweep(model, args.data, args.out, reductions or METHODS, ratios, batch_size=args.batch_size, limit=args.limit,
              num_frames=args.num_frames, max_new_tokens=args.max_new_tokens, ttft_frames=args.ttft_frames,
              ttft_clips=args.ttft_clips)
        print((Path(args.out) / "curve.md").read_text(), end="")
        return 0
    if len(reductions) > 1:
        raise ConfigError("--reduction takes one reducer without --sweep")
    if reductions:
        model.preset.reducer.method = reductions[0]
    summary = evaluate(model, args.data, args.out, ratios, batch_size=args.batch_size, limit=args.limit,
                       max_new_tokens=args.max_new_tokens, num_frames=args.num_frames)
    print((Path(args.out) / "table.md").read_text(), end="")
    return 0 if summary["results"] else 1
