"""Result folders of `aurora eval` read into one table: a `Run` per folder (per ratio for `synth`),
a `Row` per item, joined across runs by item id, and the filters and sorting the gallery offers.

Only reads: records come through `aurora.eval.records.all_records` (no torn-line repair), and
nothing is written anywhere near a result folder. Every benchmark's record becomes the same few
fields — the media and the frame indices the model saw, the question or prompt, the reference,
the prediction, right/wrong where the benchmark has it, a score to sort by, and the verdict text
(extracted letters, judge replies, attribute checks) — by `row_from_record`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.records import all_records

# The record field that names an item's task, per benchmark (the first one present wins).
_TASK_FIELDS = ("task", "task_type", "question_category", "category", "caption_type", "split", "type")
OUTCOMES = ("all items", "right in any run", "wrong in any run", "runs disagree")
SORTS = ("item order", "score difference")


@dataclass
class Row:
    """One item as one run saw it."""

    key: str
    task: str = ""
    media: str | None = None
    frame_indices: list[int] = field(default_factory=list)
    question: str = ""
    reference: str = ""
    prediction: str = ""
    correct: bool | None = None  # None: the benchmark has no right/wrong for an item
    score: float | None = None  # what "score difference" sorts by (1/0 for right/wrong)
    verdict: str = ""  # markdown: extracted answers, judge replies, attribute checks
    order: int = 0


@dataclass
class Run:
    name: str
    folder: str
    benchmark: str
    settings: dict
    headline: str
    rows: dict[str, Row]


# ---- reading folders ------------------------------------------------------------------------------

def load_runs(folders: list[str]) -> list[Run]:
    """Every run in `folders`, named by folder (made unique); one-line errors for anything else."""
    runs: list[Run] = []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise ConfigError(f"{folder} is not a folder: pass result folders of `aurora eval`")
        runs.extend(_synth_runs(path) if list(path.glob("ratio_*.jsonl")) else [_eval_run(path)])
    names: dict[str, int] = {}
    for run in runs:  # two folders called "out" in different places stay apart
        names[run.name] = names.get(run.name, 0) + 1
        if names[run.name] > 1:
            run.name = f"{run.name} ({names[run.name]})"
    return runs


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path} ({e.__class__.__name__})") from None


def _eval_run(path: Path) -> Run:
    config_path, summary_path = path / "config.json", path / "summary.json"
    if not config_path.is_file() and not summary_path.is_file():
        raise ConfigError(f"{path} holds no config.json or summary.json: not an `aurora eval` result folder")
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    config = summary.get("config") or _read_json(config_path)
    benchmark = config.get("benchmark") or summary.get("benchmark") or "?"
    records = all_records(path)
    if not records:
        raise ConfigError(f"{path} holds no per-item records (predictions*.jsonl)")
    rows = {}
    for order, record in enumerate(sorted(records.values(), key=lambda r: r.get("index", 0))):
        row = row_from_record(benchmark, record)
        row.order = order
        rows[row.key] = row
    model = config.get("model") or {}
    protocol = config.get("protocol") or {}
    settings = {"benchmark": benchmark, "model": model.get("name") or model.get("model") or model.get("kind"),
                "frames": protocol.get("num_frames") or model.get("num_frames"),
                "token kept ratio": model.get("token_kept_ratio"),
                "protocol": protocol.get("prompt_set") or protocol.get("source"),
                "judge": (config.get("judge") or {}).get("model")}
    status = headline(benchmark, summary.get("results")) if summary else f"unfinished: {len(rows)} items so far"
    return Run(path.name or str(path), str(path), benchmark, settings, status, rows)


def _synth_runs(path: Path) -> list[Run]:
    summary = _read_json(path / "summary.json") if (path / "summary.json").is_file() else {}
    clips = _synth_clips(summary.get("data"))
    runs = []
    for file in sorted(path.glob("ratio_*.jsonl"), key=lambda p: float(p.stem[6:])):
        rows = {}
        for order, record in enumerate(_read_lines(file)):
            row = _synth_row(record, clips.get(record["id"], {}), summary.get("prompt", ""))
            row.order = order
            rows[row.key] = row
        ratio = file.stem[6:]
        result = (summary.get("results") or {}).get(ratio) or {}
        status = f"attribute accuracy {100 * result['overall']:.1f}" if "overall" in result else f"{len(rows)} clips"
        settings = {"benchmark": "synth", "model": summary.get("model"), "frames": summary.get("num_frames"),
                    "token kept ratio": float(ratio), "protocol": "aurora synth attributes", "judge": None}
        runs.append(Run(f"{path.name}@{ratio}", str(path), "synth", settings, status, rows))
    return runs


def _read_lines(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run
    return records


def _synth_clips(data: str | None) -> dict[str, dict]:
    """The split's clips by id (video path, attributes), when the split file is still there."""
    if not data or not Path(data).is_file():
        return {}
    clips = {}
    for record in _read_lines(Path(data)):
        clips[record["id"]] = {**record, "_path": str(Path(data).parent / record["video"])}
    return clips


def _synth_row(record: dict, clip: dict, prompt: str) -> Row:
    scores = record.get("scores") or {}
    checks = [f"{'✓' if value == 1 else '✗' if value == 0 else f'{value:.2f}'} {aspect}"
              for aspect, value in scores.items() if aspect != "overall" and value is not None]
    overall = scores.get("overall")
    return Row(key=str(record["id"]), task=f"{len(clip.get('attributes', {}).get('objects', []))} objects" if clip else "",
               media=clip.get("_path"), question=prompt,
               reference=record.get("reference", ""), prediction=record.get("caption", ""),
               correct=None if overall is None else overall == 1.0, score=overall, verdict=" · ".join(checks))


# ---- one record -> one row -------------------------------------------------------------------------

def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "\n".join(f"{k}. {v}" for k, v in value.items())
    return str(value)


def _judge_text(judge) -> str:
    if not judge:
        return ""
    replies = judge.get("replies") or []
    text = " / ".join(r.strip() for r in replies)
    return f"judge: {text}" + (f" ({judge['error']})" if judge.get("error") else "")


def row_from_record(benchmark: str, record: dict) -> Row:
    """The gallery's fields from one `aurora eval` record, whatever the benchmark."""
    queries = record.get("queries") or [{}]
    predictions = record.get("predictions") or []
    info = (record.get("model_info") or [{}])[0] or {}
    row = Row(key=str(record["id"]), media=queries[0].get("video"), frame_indices=list(info.get("frame_indices") or []),
              question=queries[0].get("prompt", ""),
              task=str(next((record[k] for k in _TASK_FIELDS if record.get(k) not in (None, "")), "")))
    row.prediction = predictions[0] if len(predictions) == 1 else "\n".join(
        f"[{i}] {p}" for i, p in enumerate(predictions))
    if len(queries) > 1 and benchmark != "mmbench":
        row.question = "\n".join(f"[{i}] {q.get('prompt', '')}" for i, q in enumerate(queries))
    reference = record.get("answer", record.get("references", record.get("reference")))
    row.reference = _text(reference)
    lines = []
    if benchmark == "mmbench":
        options = record.get("options") or {}
        row.reference = f"{reference}. {options.get(reference, '')}" if reference else ""
        for i, d in enumerate(record.get("rotations", [])):
            mark = "✓" if d.get("correct") else "✗" if d.get("correct") is False else "·"
            lines.append(f"rotation {i}: {mark} read {d.get('matched') or 'nothing'} ({d.get('matched_by') or 'unmatched'}),"
                         f" answer {d.get('answer')} {_judge_text(d.get('judge'))}".rstrip())
    elif "extracted" in record:
        lines.append(f"read: {record['extracted'] or 'nothing'}")
    elif "pred" in record and benchmark in ("mvbench", "mlvu"):
        lines.append(f"read: {record['pred']}")
    if "correct" in record or "hit" in record:
        row.correct = bool(record.get("correct", record.get("hit")))
        row.score = float(row.correct)
    elif benchmark == "videoqa":
        pred = record.get("pred")
        row.correct = None if pred is None else "yes" in pred.lower()
        row.score = record.get("score")
        lines.append(f"judge: pred {pred}, score {record.get('score')}")
    elif benchmark == "vdc":
        row.score = record.get("score")
        row.reference = ""
        lines.append(f"accuracy {record.get('accuracy')}, score {record.get('score')}")
        for qa in record.get("qa", []):
            lines.append(f"Q: {qa.get('question')} · ref: {qa.get('answer')} · from caption: {qa.get('pred_answer')}"
                         f" · {qa.get('pred')} ({qa.get('score')})")
    elif benchmark == "vcg":
        scores = {k: v for k, v in (record.get("scores") or {}).items()}
        known = [v for v in scores.values() if v is not None]
        row.score = sum(known) / len(known) if known else None
        lines.append(", ".join(f"{k} {v}" for k, v in scores.items()))
    if "judge" in record and benchmark == "videoqa":
        lines.append(_judge_text(record["judge"]))
    row.verdict = "\n".join(line for line in lines if line)
    return row


# ---- summaries --------------------------------------------------------------------------------------

def headline(benchmark: str, results: dict | None) -> str:
    """The run's main numbers in one line."""
    if not results:
        return ""
    parts = []
    if isinstance(results.get("m_avg"), (int, float)):
        parts.append(f"M-Avg {results['m_avg']:.2f}")
    overall = results.get("overall")
    if isinstance(overall, dict):
        if overall.get("accuracy") is not None:
            parts.append(f"accuracy {overall['accuracy']:.2f}")
        if overall.get("score") is not None:
            parts.append(f"score {overall['score']:.2f}")
    if isinstance(results.get("average"), (int, float)):
        parts.append(f"average {results['average']:.2f}")
    elif isinstance(results.get("average"), dict) and results["average"].get("score") is not None:
        parts.append(f"average score {results['average']['score']:.2f}")
    if benchmark == "vdc":
        parts += [f"{k} {v['accuracy']:.1f}/{v['score']:.2f}" for k, v in results.items()
                  if isinstance(v, dict) and v.get("accuracy") is not None and v.get("score") is not None]
    if isinstance(results.get("metrics"), dict):
        parts += [f"{k} {100 * v:.2f}" for k, v in results["metrics"].items() if isinstance(v, (int, float))]
    return ", ".join(parts)


# ---- the joined table -------------------------------------------------------------------------------

@dataclass
class Item:
    """One item id across runs: `rows[i]` is run i's row, None where that run lacks the item."""

    key: str
    rows: list[Row | None]

    @property
    def first(self) -> Row:
        return next(r for r in self.rows if r is not None)

    def verdicts(self) -> list:
        return [(r.correct if r.correct is not None else r.score) for r in self.rows if r is not None]

    def disagree(self) -> bool:
        present = [r for r in self.rows if r is not None]
        if len(present) < 2:
            return False
        if any(r.correct is not None for r in present):
            return len({r.correct for r in present}) > 1
        if any(r.score is not None for r in present):
            return len({r.score for r in present}) > 1
        return len({r.prediction.strip() for r in present}) > 1

    def spread(self) -> float:
        scores = [r.score for r in self.rows if r is not None and r.score is not None]
        return max(scores) - min(scores) if len(scores) > 1 else 0.0


def join(runs: list[Run]) -> list[Item]:
    """Items of every run, in the first run's order, then items only later runs hold."""
    keys: dict[str, int] = {}
    for run in runs:
        for key, row in sorted(run.rows.items(), key=lambda kv: kv[1].order):
            keys.setdefault(key, len(keys))
    return [Item(key, [run.rows.get(key) for run in runs]) for key in keys]


def tasks(items: list[Item]) -> list[str]:
    return sorted({item.first.task for item in items if item.first.task})


def select(items: list[Item], task: str = "", outcome: str = OUTCOMES[0], search: str = "",
           sort: str = SORTS[0]) -> list[Item]:
    """The items the gallery shows for these filters, in display order."""
    if outcome not in OUTCOMES:
        raise ConfigError(f"outcome must be one of {', '.join(OUTCOMES)}")
    needle = (search or "").strip().lower()
    chosen = []
    for item in items:
        present = [r for r in item.rows if r is not None]
        if task and item.first.task != task:
            continue
        if outcome == "right in any run" and not any(r.correct for r in present):
            continue
        if outcome == "wrong in any run" and not any(r.correct is False for r in present):
            continue
        if outcome == "runs disagree" and not item.disagree():
            continue
        if needle:
            text = " ".join([item.key] + [f"{r.question} {r.reference} {r.prediction} {r.verdict}" for r in present])
            if needle not in text.lower():
                continue
        chosen.append(item)
    if sort == "score difference":
        chosen.sort(key=lambda item: -item.spread())  # stable: ties keep item order
    return chosen
