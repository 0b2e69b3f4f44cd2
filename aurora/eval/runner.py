"""The one evaluation loop every benchmark shares: items -> model answers -> scores -> JSONL -> summary.

For each batch of this rank's unfinished items the model under test answers every query, then each
item is scored (judge calls run concurrently, overlapping the next batch's generation) and its
record — prompts, predictions, raw judge replies, parsed fields, timings — is appended to the
rank's JSONL the moment it is done. `resume` skips finished items; since greedy answers and cached
judge replies replay identically, a run killed anywhere and resumed ends with the numbers of an
uninterrupted one. Rank 0 merges the ranks' files and writes `summary.json` and `table.md`, both
carrying the run's full configuration (`config.json` holds it from the start, and a resume with a
different configuration is refused).
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from threading import Lock
from types import ModuleType

from tqdm.auto import tqdm

import aurora
from aurora.errors import ConfigError
from aurora.eval import records as store

# Parts of the configuration that may change between a run and its resume.
_VOLATILE = {"items", "limit", "world_size"}
_VOLATILE_MODEL = {"batch_size", "url"}  # a server may move; the model name stays
_VOLATILE_JUDGE = {"cache", "concurrency", "url"}


def run_config(name: str, task: ModuleType, args, predictor, judge, n_items: int, limit, world: int) -> dict:
    config = {
        "benchmark": name,
        "aurora_version": aurora.__version__,
        "model": predictor.describe(),
        "judge": judge.describe() if judge else None,
        "judge_failure": getattr(args, "judge_failure", None) if judge else None,
        "protocol": task.protocol(args),
        "items": n_items,
        "limit": limit,
        "world_size": world,
    }
    return json.loads(json.dumps(config))  # plain JSON types, so a stored copy compares equal


def fingerprint(config: dict) -> dict:
    """What must match for results to be mixed: everything but batch sizes, sharding, limits, paths
    and server addresses."""
    kept = {k: v for k, v in config.items() if k not in _VOLATILE}
    kept["model"] = {k: v for k, v in (config.get("model") or {}).items() if k not in _VOLATILE_MODEL}
    if config.get("judge"):
        kept["judge"] = {k: v for k, v in config["judge"].items() if k not in _VOLATILE_JUDGE}
    return kept


def evaluate(name: str, task: ModuleType, args, predictor, judge=None, out: str | Path = "eval-out",
             resume: bool = False, limit: int | None = None, batch_size: int = 1, progress: bool = True,
             shard_timeout: float = 86400.0, items: list[dict] | None = None) -> dict | None:
    """Run (or finish) one benchmark; returns the summary on rank 0, None on other ranks.

    `items` defaults to `task.load_items(args)`; `limit` keeps the first N of them.
    """
    out = Path(out)
    items = task.load_items(args) if items is None else items
    if limit:
        items = items[:limit]
    ids = [item["id"] for item in items]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"the {name} data has repeated item ids; fix the data files")
    if not items:
        raise ConfigError(f"the {name} data holds no items")
    rank, world = store.rank_and_world()
    out.mkdir(parents=True, exist_ok=True)
    config = run_config(name, task, args, predictor, judge, len(items), limit, world)
    done = store.finished(out, rank, world)
    mine = [item for i, item in enumerate(items) if i % world == rank]
    pending = [item for item in mine if item["id"] not in done]
    if len(pending) < len(mine) and not resume:  # only this rank's items: other ranks may have started
        raise ConfigError(f"{out} already holds results: pass --resume to continue them, or choose a new --out")
    _check_config(out / "config.json", config, resume, rank)
    index = {item_id: i for i, item_id in enumerate(ids)}

    sink, lock = store.Sink(store.shard_path(out, rank, world)), Lock()
    bar = tqdm(total=len(mine), initial=len(mine) - len(pending), unit="item", dynamic_ncols=True,
               desc=name + (f" [rank {rank}/{world}]" if world > 1 else ""), disable=not progress)

    def finish(item: dict, queries: list, answers: list) -> None:
        began = time.perf_counter()
        scored = task.score(item, [a.text for a in answers], judge, args)
        record = {"id": item["id"], "index": index[item["id"]], **scored,
                  "queries": [{"prompt": q.prompt, "prefix": q.prefix, "video": q.video} for q in queries],
                  "predictions": [a.text for a in answers], "model_info": [a.info for a in answers],
                  "timings": {"model_s": round(sum(a.seconds for a in answers), 6),
                              "score_s": round(time.perf_counter() - began, 6)}}
        with lock:
            sink.write(record)
            bar.update(1)

    workers = judge.concurrency if judge else 1
    in_flight: list[Future] = []
    try:
        with ThreadPoolExecutor(max_workers=workers) as scorers:
            for start in range(0, len(pending), batch_size):
                chunk = pending[start:start + batch_size]
                per_item = [task.queries(item, args) for item in chunk]
                answers = predictor.answer([q for queries in per_item for q in queries])
                cursor = 0
                for item, queries in zip(chunk, per_item):
                    mine_answers = answers[cursor:cursor + len(queries)]
                    cursor += len(queries)
                    in_flight.append(scorers.submit(finish, item, queries, mine_answers))
                in_flight = _drain(in_flight, limit=max(2 * batch_size, workers))
            _drain(in_flight, limit=0)
    finally:
        bar.close()
        sink.close()

    if rank != 0:
        return None
    records = store.wait_and_merge(out, ids, shard_timeout, log=lambda m: print(m, file=sys.stderr))
    results = task.aggregate(records, args)
    summary = {"benchmark": name, "results": results, "items": len(records),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": config}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    (out / "table.md").write_text(markdown(summary, task.table(results)))
    return summary


def _drain(futures: list[Future], limit: int) -> list[Future]:
    """Wait until at most `limit` futures are unfinished; re-raise the first failure."""
    while True:
        for future in [f for f in futures if f.done()]:
            future.result()
        futures = [f for f in futures if not f.done()]
        if len(futures) <= limit:
            return futures
        wait(futures, return_when=FIRST_COMPLETED)


def _check_config(path: Path, config: dict, resume: bool, rank: int) -> None:
    if path.is_file():
        stored = json.loads(path.read_text())
        if resume and fingerprint(stored) != fingerprint(config):
            old, new = fingerprint(stored), fingerprint(config)
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(f"{path.parent} holds results made with a different configuration "
                              f"({', '.join(keys)} differ); use a new --out")
        if resume:
            return
    if rank == 0:
        store.atomic_write(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def markdown(summary: dict, table: str) -> str:
    """The results table under a header with the configuration it was made with."""
    config = summary["config"]
    model = config["model"]
    lines = [f"# {summary['benchmark']}", ""]
    lines.append(f"- model: {model.get('name') or model.get('model')} ({model.get('kind')}; "
                 + ", ".join(f"{k} {model[k]}" for k in ("path", "url", "num_frames", "token_kept_ratio", "media")
                             if model.get(k) is not None) + ")")
    if config.get("judge"):
        judge = config["judge"]
        lines.append(f"- judge: {judge['model']} at {judge['url']} (temperature {judge['temperature']}; "
                     f"failed verdicts: {config['judge_failure']})")
    protocol = config["protocol"]
    if protocol.get("num_frames"):
        lines.append(f"- frames fixed by the protocol: {protocol['num_frames']} ({protocol.get('sampling', '')})")
    if protocol.get("prompt_set"):
        lines.append(f"- prompt set: {protocol['prompt_set']}")
    for key in ("answer_extraction", "aggregation"):  # choices between published rules
        if protocol.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {protocol[key]}")
    lines.append(f"- items: {summary['items']}; aurora {config['aurora_version']}")
    return "\n".join(lines) + "\n\n" + table
