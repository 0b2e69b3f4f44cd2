"""What to caption: a batch job's input (a directory, a list file or a table) -> media references.

A reference is a local path or a URL (http(s)://, file://, data:), kept exactly as the input spells
it: it is the key of the job's result rows, so the same input resumes onto the same rows.

- a directory: every file below it with a video or image extension, sorted;
- a .txt / .lst file (or any other extension): one reference per line, blank lines and `#` comments skipped;
- .csv, .jsonl / .json lines, .parquet: the `column` of each row (default "path").

Relative paths are relative to the current directory, as for any other command-line path.
Duplicates are dropped (first occurrence kept): every distinct input gets exactly one row.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from aurora import media
from aurora.errors import ConfigError

TABLE_EXTENSIONS = (".csv", ".jsonl", ".parquet")
DEFAULT_COLUMN = "path"
URL_SCHEMES = ("http://", "https://", "file://", "data:")


def read_inputs(source: str | os.PathLike, column: str | None = None) -> list[str]:
    """The distinct media references `source` names, in input order (a directory's: sorted)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ConfigError(f"input {str(source)!r} not found: pass a directory, a list of paths/URLs, or a CSV/JSONL/parquet table")
    if path.is_dir():
        if column is not None:
            raise ConfigError("--column is for CSV/JSONL/parquet inputs, not a directory")
        return _media_below(path)
    extension = path.suffix.lower()
    if extension in TABLE_EXTENSIONS:
        return unique(_column_of(path, extension, column or DEFAULT_COLUMN))
    if column is not None:
        raise ConfigError(f"--column is for CSV/JSONL/parquet inputs; {path} is read as a list of paths, one per line")
    if extension in media.VIDEO_EXTENSIONS + media.IMAGE_EXTENSIONS:
        raise ConfigError(f"{path} is a media file: `aurora caption` captions one file; caption-batch takes a directory or a list")
    return unique(_lines_of(path))


def unique(references: list[str]) -> list[str]:
    return list(dict.fromkeys(references))


def is_url(reference: str) -> bool:
    return reference.lower().startswith(URL_SCHEMES)


def _media_below(directory: Path) -> list[str]:
    extensions = media.VIDEO_EXTENSIONS + media.IMAGE_EXTENSIONS
    found = [
        os.path.join(root, name)
        for root, _, names in os.walk(directory)
        for name in names
        if os.path.splitext(name)[1].lower() in extensions
    ]
    return sorted(found)


def _lines_of(path: Path) -> list[str]:
    text = _read_text(path)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _column_of(path: Path, extension: str, column: str) -> list[str]:
    if extension == ".parquet":
        from aurora.batch.rows import import_pyarrow

        import_pyarrow()
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as e:  # not parquet, truncated: pyarrow's own message, on one line
            raise ConfigError(f"cannot read {path} as parquet: {' '.join(str(e).split())}") from None
        _check_column(path, column, names)
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    elif extension == ".csv":
        reader = csv.DictReader(_read_text(path).splitlines())
        _check_column(path, column, reader.fieldnames or [])
        values = [row.get(column) for row in reader]
    else:  # JSON lines
        values, names = [], set()
        for number, line in enumerate(_read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path} line {number} is not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path} line {number} is not a JSON object")
            names.update(row)
            values.append(row.get(column))
        _check_column(path, column, sorted(names))
    return [str(value).strip() for value in values if value is not None and str(value).strip()]


def _check_column(path: Path, column: str, names) -> None:
    if column not in names:
        raise ConfigError(f"{path} has no column {column!r} (columns: {', '.join(map(str, names)) or 'none'}); name it with --column")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: pass a directory, a list of paths/URLs, or a CSV/JSONL/parquet table") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
