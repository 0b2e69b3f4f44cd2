"""Where rows go: a JSONL or parquet file (by extension), written as rows arrive and resumable.

A killed job loses no finished row and repeats none: `--resume` reads what is there, drops a
half-written tail, and the job captions only the inputs without a row.

- JSONL: one line per row, appended and fsynced per batch; on resume a torn last line is cut off.
- parquet (a file cannot be appended to): rows go to `RESULTS.parts/part-NNNNNN.parquet`, each
  part written to a temporary name and renamed, so a part is either whole or absent; when the job
  ends the parts (and a previous run's file) are combined into RESULTS, again through a rename.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from aurora.batch.rows import COLUMNS, import_pyarrow, schema, to_table
from aurora.errors import ConfigError

EXTENSIONS = (".jsonl", ".parquet")


def open_results(path: str | os.PathLike, resume: bool, settings: dict, unrecorded: dict | None = None):
    """A writer for `path`; with `resume`, its `.rows` are the rows already there. `unrecorded`: what
    a setting was before files recorded it (else None)."""
    path = Path(path)
    extension = path.suffix.lower()
    if extension not in EXTENSIONS:
        raise ConfigError(f"--out must end in .jsonl or .parquet, got {str(path)!r}")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory: name a .jsonl or .parquet file")
    if not path.parent.is_dir():
        raise ConfigError(f"--out {path}: directory {path.parent} does not exist")
    if extension == ".parquet":
        import_pyarrow()
    writer = (JsonlResults if extension == ".jsonl" else ParquetResults)(path)
    if writer.started() and not resume:
        raise ConfigError(f"{path} already holds results: pass --resume to continue that job, or choose another --out")
    if resume:
        writer.recover()
        _check_same_job(path, writer.rows, settings, unrecorded or {})
    return writer


def _check_same_job(path: Path, rows: list[dict], settings: dict, unrecorded: dict) -> None:
    # files written before a setting existed lack its key: read it as `unrecorded` says, else unset (None)
    if rows and {key: None for key in settings} | unrecorded | (rows[0].get("settings") or {}) != settings:
        raise ConfigError(
            f"{path} was written with settings {json.dumps(rows[0].get('settings'))}, this job has {json.dumps(settings)}: "
            "resume with the same options, or choose another --out"
        )


class JsonlResults:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self._file = None

    def started(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def recover(self) -> None:
        """Read the complete rows; cut a torn last line (the job was killed mid-write)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # bytes up to the last complete line
        for number, line in enumerate(data[:end].splitlines(), 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"{self.path} line {number} is not a result row: is --out the right file?") from None
            if not isinstance(row, dict) or "path" not in row:
                raise ConfigError(f"{self.path} line {number} is not a result row: is --out the right file?")
            self.rows.append(row)
        if end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)

    def write(self, rows: list[dict]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self, finished: bool = True) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif finished and not self.path.exists():
            self.path.touch()  # a job with nothing to do still leaves its (empty) results


class ParquetResults:
    def __init__(self, path: Path, flush_rows: int = 1024, flush_seconds: float = 60.0):
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.rows: list[dict] = []
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._pending: list[dict] = []
        self._last_flush = time.monotonic()
        self._next_part = 0

    def started(self) -> bool:
        return self.path.exists() or self.parts.is_dir()

    def recover(self) -> None:
        import_pyarrow()
        import pyarrow.parquet as pq

        if self.path.exists():
            try:
                self.rows += pq.read_table(self.path).to_pylist()
            except Exception as e:  # not parquet, or not ours
                raise ConfigError(f"cannot read {self.path} as results: {' '.join(str(e).split())}") from None
        for part in self._part_files():
            self.rows += pq.read_table(part).to_pylist()
        seen: set = set()  # a job killed between combining and cleaning up left each row twice
        self.rows = [row for row in self.rows if not (row["path"] in seen or seen.add(row["path"]))]
        if self.rows and set(self.rows[0]) != set(COLUMNS):
            raise ConfigError(f"{self.path} does not hold caption-batch results: is --out the right file?")

    def _part_files(self) -> list[Path]:
        if not self.parts.is_dir():
            return []
        for stale in self.parts.glob("*.tmp"):  # a part the killed job was still writing
            stale.unlink()
        parts = sorted(self.parts.glob("part-*.parquet"))
        if parts:
            self._next_part = int(parts[-1].stem.split("-")[1]) + 1
        return parts

    def write(self, rows: list[dict]) -> None:
        self._pending += rows
        if len(self._pending) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self._flush()

    def _flush(self) -> None:
        import pyarrow.parquet as pq

        if not self._pending:
            return
        self.parts.mkdir(exist_ok=True)
        part = self.parts / f"part-{self._next_part:06d}.parquet"
        pq.write_table(to_table(self._pending), f"{part}.tmp")
        os.replace(f"{part}.tmp", part)
        self._next_part += 1
        self._pending = []
        self._last_flush = time.monotonic()

    def close(self, finished: bool = True) -> None:
        """Flush; when the job finished, combine the previous file and every part into RESULTS (atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._flush()
        if not finished:  # the parts are the job's progress: --resume reads them
            return
        tables = [pq.read_table(self.path, schema=schema())] if self.path.exists() else []
        tables += [pq.read_table(part, schema=schema()) for part in self._part_files()]
        table = pa.concat_tables(tables) if tables else schema().empty_table()
        first = {}  # path -> first row index: a job killed between combining and cleaning up left each row twice
        for index, path in enumerate(table.column("path").to_pylist()):
            first.setdefault(path, index)
        if len(first) < table.num_rows:
            table = table.take(sorted(first.values()))
        pq.write_table(table, f"{self.path}.tmp")
        os.replace(f"{self.path}.tmp", self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
