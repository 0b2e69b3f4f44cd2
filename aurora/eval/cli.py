"""`aurora eval BENCHMARK ...`: the evaluation subcommand, a thin layer over `aurora.eval.runner`.

`add_parser(subparsers)` adds `eval` with one sub-parser per registered benchmark (its own flags
plus the shared model / judge / run flags); handlers raise `ConfigError` for user mistakes, which
the main CLI prints as one line (exit code 2).

    aurora eval vdc --model PATH --qa-dir post_eval --video-dir VDC/videos --out runs/vdc \\
        --judge-url http://localhost:30000/v1 --judge-model meta-llama/Llama-3.1-8B-Instruct
    accelerate launch -m aurora eval mvbench --model PATH --json-dir MVBench/json \\
        --video-root MVBench/video --out runs/mvbench          # items sharded over the processes
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

from aurora.argtypes import positive_float, positive_int
from aurora.errors import ConfigError
from aurora.eval import registry
from aurora.model_flags import add_generation_flags, add_load_flags, load_model
from aurora.eval.records import rank_and_world
from aurora.eval.task import FAILURE_POLICIES, check_policy








def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model on a benchmark (" + ", ".join(registry.names()) + ")",
                              description="Evaluate an Aurora model or an OpenAI-compatible endpoint on a "
                                          "benchmark with its published protocol; resumable and shardable.")
    benchmarks = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name in registry.names():
        task = registry.load(name)
        b = benchmarks.add_parser(name, help=task.SUMMARY, description=task.SUMMARY)
        task.add_arguments(b)
        if hasattr(task, "run"):  # a benchmark with its own loop and flags (synth)
            b.set_defaults(run=task.run)
        else:
            _add_shared_flags(b, judged=task.JUDGED)
            b.set_defaults(run=partial(run_benchmark, name))
        b.add_argument("--debug", action="store_true", help="show full tracebacks")


def _add_shared_flags(p: argparse.ArgumentParser, judged: bool) -> None:
    g = p.add_argument_group("model under test (one of --model / --endpoint)")
    add_load_flags(g)
    g.add_argument("--endpoint", help="OpenAI-compatible server to evaluate instead, e.g. http://host:8000/v1")
    g.add_argument("--endpoint-model", dest="endpoint_model", help="model name to send to --endpoint")
    g.add_argument("--endpoint-media", dest="endpoint_media", choices=("frames", "video"), default="frames",
                   help="send sampled frames as image parts (default) or the file as a video_url part")
    g.add_argument("--endpoint-api-key-env", dest="endpoint_api_key_env", default="OPENAI_API_KEY",
                   help="environment variable holding the endpoint's API key (default OPENAI_API_KEY)")
    g.add_argument("--endpoint-concurrency", dest="endpoint_concurrency", type=positive_int, default=4)
    g.add_argument("--image-format", dest="image_format", choices=("jpeg", "png"), default="jpeg")
    add_generation_flags(g, "default: the benchmark's (MVBench 100), else the model's preset")
    g.add_argument("--batch-size", dest="batch_size", type=positive_int, default=8, help="items per model call (default 8)")
    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, help="results folder: predictions JSONL, config.json, summary.json, table.md")
    r.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished items")
    r.add_argument("--protocol", choices=("auto", "official", "pllava"), default="auto",
                   help="prompt variant: the benchmark's official one, or PLLaVA's evaluation scripts' "
                        "(MVBench, VideoQA); auto: PLLaVA's for a PLLaVA model")
    r.add_argument("--limit", type=positive_int, help="only the first N items")
    r.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    r.add_argument("--shard-timeout", dest="shard_timeout", type=positive_float, default=86400.0,
                   help="seconds rank 0 waits for the other ranks' items (default one day)")
    if not judged:
        return
    j = p.add_argument_group("judge (any OpenAI-compatible endpoint)")
    j.add_argument("--judge-url", dest="judge_url", help="e.g. http://localhost:30000/v1 (SGLang) or https://api.openai.com/v1")
    j.add_argument("--judge-model", dest="judge_model", help="e.g. meta-llama/Llama-3.1-8B-Instruct (VDCscore's published judge)")
    j.add_argument("--judge-api-key-env", dest="judge_api_key_env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge's API key (default OPENAI_API_KEY; unset = no key)")
    j.add_argument("--judge-temperature", dest="judge_temperature", type=float, default=0.0)
    j.add_argument("--judge-max-tokens", dest="judge_max_tokens", type=positive_int, help="default: the benchmark's, else the server's")
    j.add_argument("--judge-concurrency", dest="judge_concurrency", type=positive_int, default=8, help="requests in flight (default 8)")
    j.add_argument("--judge-timeout", dest="judge_timeout", type=positive_float, default=120.0, help="seconds per request")
    j.add_argument("--judge-retries", dest="judge_retries", type=int, default=5, help="retries on timeouts, 429 and 5xx (default 5)")
    j.add_argument("--judge-backoff", dest="judge_backoff", type=float, default=1.0, help="seconds before the first retry; doubles")
    j.add_argument("--judge-parse-attempts", dest="judge_parse_attempts", type=positive_int, default=3,
                   help="asks per verdict while the reply does not parse (default 3)")
    j.add_argument("--judge-cache", dest="judge_cache", help="SQLite reply cache (default: OUT/judge_cache.sqlite)")
    j.add_argument("--judge-failure", dest="judge_failure", choices=tuple(FAILURE_POLICIES), default="zero",
                   help="how a verdict that never parsed counts: zero = wrong, score 0 (default); skip = left out")


def wants_judge(task, args) -> bool:
    """A judged benchmark always needs its judge; an optional one (MMBench's fallback) when --judge-url is given."""
    return task.JUDGED is True or (task.JUDGED == "optional" and bool(getattr(args, "judge_url", None)))


def build_judge(args):
    from aurora.eval.chat_client import ChatClient
    from aurora.eval.judge import Judge, JudgeCache

    if not args.judge_url or not args.judge_model:
        raise ConfigError(f"the {args.benchmark} benchmark needs a judge: pass --judge-url and --judge-model")
    check_policy(args.judge_failure)
    client = ChatClient(args.judge_url, args.judge_model, api_key_env=args.judge_api_key_env,
                        timeout=args.judge_timeout, retries=args.judge_retries, backoff=args.judge_backoff)
    cache = JudgeCache(args.judge_cache or Path(args.out) / "judge_cache.sqlite")
    return Judge(client, cache, temperature=args.judge_temperature, max_tokens=args.judge_max_tokens,
                 concurrency=args.judge_concurrency, parse_attempts=args.judge_parse_attempts)


def build_predictor(args):
    from aurora.eval.predictors import AuroraPredictor, EndpointPredictor
    from aurora.generation import GenerationOptions

    options = GenerationOptions(temperature=args.temperature, top_p=args.top_p, num_beams=args.num_beams,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
    if args.endpoint:
        from aurora.eval.chat_client import ChatClient

        if args.model:
            raise ConfigError("give either --model or --endpoint, not both")
        if not args.endpoint_model:
            raise ConfigError("--endpoint needs --endpoint-model (the model name the server expects)")
        if args.token_kept_ratio is not None:
            raise ConfigError("--token-kept-ratio applies to Aurora models, not to --endpoint")
        client = ChatClient(args.endpoint, args.endpoint_model, api_key_env=args.endpoint_api_key_env)
        return EndpointPredictor(client, args.endpoint_media, args.num_frames or 8, args.fps, options,
                                 args.endpoint_concurrency, args.image_format)
    if args.device == "auto" and rank_and_world()[1] > 1:
        import torch

        if torch.cuda.is_available():  # one GPU per launched process
            local = os.environ.get("LOCAL_RANK") or os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK") or "0"
            args.device = f"cuda:{int(local) % torch.cuda.device_count()}"
    model = load_model(args)
    return AuroraPredictor(model, args.num_frames, args.fps, args.token_kept_ratio, options, args.batch_size,
                           source=str(args.model) if args.model else None)


def resolve_protocol(task, args, predictor) -> str:
    """The prompt variant that runs (recorded in the summary): --protocol, or for "auto" the
    variant of the model's family when the benchmark has one."""
    variants = getattr(task, "PROTOCOLS", ("official",))
    chosen = getattr(args, "protocol", "auto")
    if chosen == "auto":
        model = getattr(predictor, "model", None)
        family = model.preset.family if model is not None else None
        return family if family in variants else "official"
    if chosen not in variants:
        raise ConfigError(f"--protocol {chosen}: this benchmark has the variants {', '.join(variants)}")
    return chosen


def run_benchmark(name: str, args) -> int:
    from aurora.eval import runner

    task = registry.load(name)
    items = task.load_items(args)  # data mistakes fail before a model is loaded
    judge = build_judge(args) if wants_judge(task, args) else None
    predictor = build_predictor(args)
    args.protocol = resolve_protocol(task, args, predictor)
    try:
        summary = runner.evaluate(name, task, args, predictor, judge, out=args.out, resume=args.resume,
                                  limit=args.limit, batch_size=args.batch_size, progress=not args.no_progress,
                                  shard_timeout=args.shard_timeout, items=items)
    finally:
        if judge is not None:
            judge.close()
    if summary is not None:
        print((Path(args.out) / "table.md").read_text(), end="")
    return 0
