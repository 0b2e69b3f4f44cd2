"""Evaluation: benchmarks as data plus small scoring functions, judges and metrics.

    tasks/        one module per benchmark (vdc, videoqa, vcg, mvbench, videomme, caption_metrics,
                  mmbench, mme_realworld, longvideobench, mlvu, synth): published prompts byte for
                  byte, data layouts, scoring and aggregation
    registry.py   the benchmark names: every module in tasks/ (adding a benchmark = adding a file)
    task.py       what a benchmark module provides (Query, FrameSpec) and shared small helpers
    runner.py     the one resumable, shardable loop: answers -> scores -> JSONL -> summary
    records.py    per-item JSONL (torn lines dropped), per-rank files, rank-0 merge
    predictors.py the model under test: an Aurora model (batched) or an OpenAI-compatible endpoint
    frames.py     frames fixed by a protocol (MVBench segment middles, windows, frame folders;
                  LongVideoBench's rule)
    images.py     base64 images of benchmark files written once to a folder (MMBench)
    judge.py      LLM judge over HTTP: concurrency, parse retries, SQLite reply cache
    chat_client.py  the OpenAI-compatible transport with retries and backoff
    metrics.py    BLEU-4 / METEOR / ROUGE-L / CIDEr-D through pycocoevalcap
    lmms_plugin.py  Aurora as an lmms-eval model
    cli.py        `aurora eval BENCHMARK ...`
    synth_eval.py, synth_score.py   the synthetic benchmark (its own loop)

Where published implementations disagree, each benchmark module's docstring says which rule is
followed, and `protocol()` records it in every run's config.json and summary.json.
"""
