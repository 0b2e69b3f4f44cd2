"""Video-MME (without subtitles): the official prompt and the official answer extraction.

Data: the question table of the release (lmms-lab/Video-MME, one row per question: video_id,
duration, domain, sub_category, videoID, question_id, task_type, question, options ["A. ...", ...],
answer) as JSON or JSONL, or the nested layout of the official output template (videos with a
`questions` list); videos `<videoID>.mp4` (else .MP4, .mkv) in `--video-dir`.

Prompt (MME-Benchmarks/Video-MME README, "Without subtitles"):
    Select the best answer ... Respond with only the letter (A, B, C, or D) of the correct option.
    {question}
    A. ...  (one option per line)
    The best answer is:
Extraction, `--answer-extraction current` (default; the official script as it is now, also
lmms-eval's videomme task): strip, delete the answer prefixes ("The best answer is", ..., "Answer:",
"Option:", "The correct answer", "The correct option"), return "" for an answer of more than 10
words without any of A-D, else the first A-D character anywhere. `legacy` is the earlier
eval_your_results.py (commit 4e7566d): its list lacks the last four prefixes and two missing commas
glue "The best option is" to "The correct option is" and "Best answer:" to "Best option:", so
"Best option: C" and "Answer: B" both read "A"/"B" from the prefix's letters. Accuracy, as the
official script: correct / answered, where answered excludes empty extractions; per duration,
domain, sub-category and task type, and overall. The share of all questions answered correctly is
reported too (`accuracy_all`). The rule that ran is recorded in the run's config.
"""

from __future__ import annotations

import re
from pathlib import Path

from aurora.eval.records import read_json_or_jsonl
from aurora.eval.task import Query, find_video, percent, require_videos

SUMMARY = "Video-MME (no subtitles): official prompt, official letter extraction, breakdowns"
JUDGED = False
SOURCE = ("MME-Benchmarks/Video-MME: README.md (prompt); evaluation/eval_your_results.py as of commit 4e7566d, "
          "since moved to thanku-all/parse_answer (extract_characters_regex, accuracy)")
VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv")
OPTION_PROMPT = ("Select the best answer to the following multiple-choice question based on the video. "
                 "Respond with only the letter (A, B, C, or D) of the correct option.")
POST_PROMPT = "The best answer is:"
# The earlier official list, as published: the missing commas concatenate neighbouring literals.
LEGACY_ANSWER_PREFIXES = [
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is" "The correct option is",
    "Best answer:" "Best option:",
]
# The current official list (Video-MME's parse_answer / lmms-eval videomme utils).
ANSWER_PREFIXES = [
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
    "Answer:",
    "Option:",
    "The correct answer",
    "The correct option",
]
EXTRACTIONS = {"current": ANSWER_PREFIXES, "legacy": LEGACY_ANSWER_PREFIXES}
BREAKDOWNS = ("duration", "domain", "sub_category", "task_type")


def build_prompt(question: str, options: list[str]) -> str:
    return OPTION_PROMPT + "\n" + question + "\n" + "\n".join(options) + "\n" + POST_PROMPT


def extract_answer(text: str, rule: str = "current") -> str:
    """The official letter extraction (`rule`: current or legacy); "" when no answer can be read."""
    s = text.strip()
    for prefix in EXTRACTIONS[rule]:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCD]", s):
        return ""
    match = re.search(r"[ABCD]", s)
    return match[0] if match else ""


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="the question table (JSON / JSONL rows, or the official nested template)")
    p.add_argument("--video-dir", dest="video_dir", required=True, help="folder of <videoID>.mp4")
    p.add_argument("--answer-extraction", dest="answer_extraction", choices=tuple(EXTRACTIONS), default="current",
                   help="current: the official script's prefix list now (default); legacy: its earlier list")


def _rows(path: Path) -> list[dict]:
    data = read_json_or_jsonl(path)
    rows = []
    for entry in data:
        if "questions" in entry:  # nested: one video with its questions
            video = {k: v for k, v in entry.items() if k != "questions"}
            rows.extend({**video, **q} for q in entry["questions"])
        else:
            rows.append(entry)
    return rows


def load_items(args) -> list[dict]:
    items = []
    for row in _rows(Path(args.data)):
        name = str(row.get("videoID") or row["video_id"])
        items.append({"id": str(row["question_id"]), "video_name": name,
                      "video": find_video(args.video_dir, name, VIDEO_EXTENSIONS),
                      "duration": row.get("duration") or row.get("duration_category"),
                      "domain": row.get("domain") or row.get("video_category"),
                      "sub_category": row.get("sub_category") or row.get("video_subcategory"),
                      "task_type": row.get("task_type"), "question": row["question"],
                      "options": list(row["options"]), "answer": row["answer"]})
    require_videos(items, "Video-MME")
    return items


def protocol(args) -> dict:
    return {"prompt_set": "Video-MME official, without subtitles", "source": SOURCE,
            "prompt": build_prompt("{question}", ["{options, one per line}"]),
            "answer_extraction": _rule(args), "answer_prefixes": EXTRACTIONS[_rule(args)],
            "accuracy": "correct / answered (empty extractions not answered), as the official script"}


def _rule(args) -> str:
    return getattr(args, "answer_extraction", "current")


def queries(item, args) -> list[Query]:
    return [Query(item["video"], build_prompt(item["question"], item["options"]))]


def score(item, answers, judge, args) -> dict:
    extracted = extract_answer(answers[0], _rule(args))
    return {**{k: item[k] for k in BREAKDOWNS}, "question_id": item["id"], "answer": item["answer"],
            "extracted": extracted, "answered": extracted != "", "correct": extracted == item["answer"]}


def _accuracy(records: list[dict]) -> dict:
    answered = sum(r["answered"] for r in records)
    correct = sum(r["correct"] for r in records)
    return {"accuracy": percent(correct, answered), "accuracy_all": percent(correct, len(records)),
            "correct": correct, "answered": answered, "total": len(records)}


def aggregate(records, args) -> dict:
    results = {"overall": _accuracy(records)}
    for key in BREAKDOWNS:
        groups: dict[str, list] = {}
        for record in records:
            groups.setdefault(str(record[key]), []).append(record)
        results[key] = {name: _accuracy(group) for name, group in groups.items()}
    return results


def table(results) -> str:
    def row(name, r):
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.1f}"
        return f"| {name} | {acc} | {r['accuracy_all']:.1f} | {r['correct']} / {r['answered']} / {r['total']} |\n"

    text = "| split | accuracy (answered) | accuracy (all) | correct / answered / total |\n|---|---|---|---|\n"
    text += row("**overall**", results["overall"])
    for key in BREAKDOWNS:
        for name, r in results[key].items():
            text += row(f"{key}: {name}", r)
    return text
