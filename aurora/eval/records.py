"""Per-item result files: append-only JSONL that survives a kill, one file per rank, merged by rank 0.

A run writes one JSON line per finished item, flushed at once, so a process killed at any moment
leaves at most one torn last line; `read_jsonl(repair=True)` drops it. Under a launcher
(`accelerate launch`, torchrun: RANK / WORLD_SIZE) item i belongs to rank i % world, each rank
appends to its own file, and rank 0 waits — by reading the files, not torch.distributed, so it
works on CPU — until every item is somewhere, then writes the merged file (deduplicated by id).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from aurora.errors import ConfigError

MERGED = "predictions.jsonl"


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when run alone.

    torchrun / `accelerate launch` (GPUs) set RANK and WORLD_SIZE; MPI launchers (accelerate's
    multi-CPU mode uses mpirun) set OMPI_COMM_WORLD_* or PMI_*.
    """
    env = os.environ
    for rank_key, world_key in (("RANK", "WORLD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                                ("PMI_RANK", "PMI_SIZE")):
        if world_key in env:
            try:
                rank, world = int(env.get(rank_key, "0")), int(env[world_key])
            except ValueError:
                raise ConfigError(f"{rank_key} / {world_key} must be integers") from None
            if world < 1 or not 0 <= rank < world:
                raise ConfigError(f"{rank_key}={rank} is outside {world_key}={world}")
            return rank, world
    return 0, 1


def shard_path(out: Path, rank: int, world: int) -> Path:
    return out / (MERGED if world == 1 else f"predictions.rank{rank}-of-{world}.jsonl")


def read_json_or_jsonl(path: Path) -> list:
    """A benchmark file: one JSON document (a list) or JSON Lines; one-line errors for bad files."""
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    text = path.read_text()
    try:
        return json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is neither JSON nor JSONL ({e})") from None


def read_jsonl(path: Path, repair: bool = False) -> list[dict]:
    """The records of a JSONL file; lines that do not parse (a torn write) are dropped, and with
    `repair` the file is rewritten without them so later appends start on a clean line."""
    if not path.is_file():
        return []
    records, bad = [], False
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad = True
    if repair and (bad or not path.read_text().endswith("\n")) and path.stat().st_size:
        atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records


class Sink:
    """Appends one record per line, flushed immediately (a kill loses at most the line being written)."""

    def __init__(self, path: Path):
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def finished(out: Path, rank: int, world: int) -> dict[str, dict]:
    """Records already written for this run, by id, from every file (an earlier run may have had
    another world size); this rank's own file is repaired first so appends start on a clean line."""
    read_jsonl(shard_path(out, rank, world), repair=True)
    return all_records(out)


def all_records(out: Path) -> dict[str, dict]:
    """Every record under `out` (merged file and every rank's file), first occurrence of an id wins."""
    records: dict[str, dict] = {}
    for path in [out / MERGED, *sorted(out.glob("predictions.rank*-of-*.jsonl"))]:
        for record in read_jsonl(path):
            records.setdefault(record["id"], record)
    return records


def wait_and_merge(out: Path, ids: list[str], timeout: float, poll: float = 2.0, log=None) -> list[dict]:
    """Rank 0 (or a lone process): wait until every id has a record in some file, then write the
    merged file.

    Returns the records in `ids` order (records of other ids, e.g. from a run with a larger --limit,
    are kept in the file after them). Raises ConfigError after `timeout` seconds with ids missing
    (a rank died: rerun with --resume).
    """
    deadline = time.monotonic() + timeout
    said = False
    while True:
        records = all_records(out)
        missing = [i for i in ids if i not in records]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise ConfigError(f"{len(missing)} items never arrived from the other ranks (first: {missing[0]}); "
                              f"rerun the same command with --resume")
        if log and not said:
            log(f"waiting for the other ranks ({len(missing)} items to go)")
            said = True
        time.sleep(poll)
    wanted = set(ids)
    ordered = [records[i] for i in ids] + [r for i, r in records.items() if i not in wanted]  # keep extras
    atomic_write(out / MERGED, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    return ordered[: len(ids)]


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
