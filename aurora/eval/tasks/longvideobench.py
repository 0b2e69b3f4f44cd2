"""LongVideoBench: long-video multiple choice with the official frames, prompt, subtitle option and
accuracy by duration group.

Sources: longvideobench/LongVideoBench at commit fc3c553, longvideobench/longvideobench_dataset.py
(frames, subtitle selection, prompt) and README.md (16 frames by default); lmms-eval at 75571cf,
lmms_eval/tasks/longvideobench/utils.py and longvideobench_val_v.yaml (answer parsing, accuracy,
32 new tokens, the `--prompt-style lmms-eval` prompt).

Data: the release folder (`--data-dir`, holding videos/ and subtitles/) and its annotation file
(`--annotations`, default lvb_val.json: id, video_path, subtitle_path, duration, duration_group,
question, candidates, correct_choice, question_category, starting_timestamp_for_subtitles; the
Hugging Face rows with option0..option4 ("N/A" = none) are read too).

Frames: n = min(--num-frames (default 16), int(duration)); frame i = int(int(duration x fps) / n) x i
(`aurora.eval.frames.longvideobench_indices`). Prompt (official, the dataloader's text parts joined
by newlines — Aurora's prompt holds the frames as one block, so subtitles cannot sit between them):
with `--subtitles`, the subtitle lines the official interleaving keeps (those whose span, widened
to 1 s when shorter, holds a sampled frame's timestamp), then "Question: {question}", "A. {option}"
per option, and "Answer with the option's letter from the given choices directly.".
Parsing (lmms-eval's `parse_multi_choice_response`, "same as the original paper"): strip, delete the
answer prefixes, then the first A-E; a reply of more than 10 words without A-E, or with no letter at
all, gets a random option — drawn here from a generator seeded by the item id, so reruns agree.
Accuracy: right / questions, overall, per duration group and per question category.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from aurora import media
from aurora.errors import ConfigError
from aurora.eval.records import read_json_or_jsonl
from aurora.eval.task import FrameSpec, Query, percent

SUMMARY = "LongVideoBench: official frames (16), prompt, optional subtitles; accuracy by duration group"
JUDGED = False
SOURCE = ("longvideobench/LongVideoBench@fc3c553: longvideobench/longvideobench_dataset.py, README.md; "
          "lmms-eval@75571cf: lmms_eval/tasks/longvideobench/utils.py (parsing, accuracy)")
NUM_FRAMES = 16
MAX_NEW_TOKENS = 32
INSTRUCTION = "Answer with the option's letter from the given choices directly."
ANSWER_PREFIXES = ["The best answer is", "The correct answer is", "The answer is", "The answer",
                   "The best option is", "The correct option is", "Best answer:", "Best option:"]


def timestamp_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def kept_subtitles(subtitles: list[dict], frame_times: list[float], offset: float, duration: float) -> list[str]:
    """The subtitle lines `insert_subtitles_into_frames` keeps, in order."""
    kept = []
    for subtitle in subtitles:
        if "timestamp" in subtitle:
            start, end = subtitle["timestamp"]
            if not isinstance(end, float):  # as published: an open (or integer) end becomes the duration
                end = duration
            text = subtitle["text"]
        else:
            start, end = timestamp_seconds(subtitle["start"]), timestamp_seconds(subtitle["end"])
            text = subtitle["line"]
        start, end = start - offset, end - offset
        middle = (start + end) / 2
        if end - start < 1:
            start, end = middle - 0.5, middle + 0.5
        if any(start < t < end for t in frame_times):
            kept.append(text)
    return kept


def parse_answer(text: str, letters: list[str], seed: str) -> tuple[str, bool]:
    """(letter, read by the rules); a random letter (seeded) when the reply names none."""
    s = text.strip()
    for prefix in ANSWER_PREFIXES:
        s = s.replace(prefix, "")
    match = re.search(r"[ABCDE]", s)
    if match is None:  # both published branches (a long reply without A-E, no letter at all) guess
        return random.Random(seed).choice(letters), False
    return match[0], True


def build_prompt(question: str, candidates: list[str], subtitles: list[str], style: str) -> str:
    options = [". ".join([chr(ord("A") + i), c]) for i, c in enumerate(candidates)]
    if style == "lmms-eval":  # longvideobench_doc_to_text; subtitles as its interleaved prefix without <image>
        body = question + "\n" + "\n".join(options)
        return ("\n".join(subtitles) + "\n" if subtitles else "") + f"{body}\n{INSTRUCTION}\n"
    return "\n".join(subtitles + ["Question: " + question] + options + [INSTRUCTION])


def add_arguments(p) -> None:
    p.add_argument("--data-dir", dest="data_dir", required=True, help="the release folder (videos/, subtitles/)")
    p.add_argument("--annotations", default="lvb_val.json", help="annotation file, relative to --data-dir (default lvb_val.json)")
    p.add_argument("--subtitles", action="store_true", help="add the subtitle lines that fall on sampled frames")
    p.add_argument("--prompt-style", dest="prompt_style", choices=("official", "lmms-eval"), default="official")


def _candidates(row: dict) -> list[str]:
    if "candidates" in row:
        return list(row["candidates"])
    return [row[f"option{i}"] for i in range(5) if row.get(f"option{i}") not in (None, "N/A")]


def load_items(args) -> list[dict]:
    root = Path(args.data_dir)
    path = Path(args.annotations) if Path(args.annotations).is_absolute() else root / args.annotations
    items = []
    for row in read_json_or_jsonl(path):
        try:
            item = {"id": str(row["id"]), "video": str(root / "videos" / row["video_path"]),
                    "subtitle_path": str(root / "subtitles" / row["subtitle_path"]) if row.get("subtitle_path") else None,
                    "duration": float(row["duration"]), "duration_group": str(row["duration_group"]),
                    "question_category": row.get("question_category"), "question": row["question"],
                    "candidates": _candidates(row), "answer": chr(ord("A") + int(row["correct_choice"])),
                    "subtitle_offset": float(row.get("starting_timestamp_for_subtitles") or 0.0)}
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path} is not a LongVideoBench annotation file with answers (bad field {e})") from None
        items.append(item)
    missing = [i for i in items if not Path(i["video"]).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} LongVideoBench videos not found (first: {missing[0]['video']}); check --data-dir")
    if args.subtitles:
        absent = [i for i in items if not i["subtitle_path"] or not Path(i["subtitle_path"]).is_file()]
        if absent:
            raise ConfigError(f"{len(absent)} subtitle files not found (first: {absent[0]['subtitle_path']}); "
                              f"extract subtitles.tar into --data-dir or drop --subtitles")
    return items


def _frame_spec(item, args) -> FrameSpec:
    return FrameSpec(num_frames=args.num_frames or NUM_FRAMES, sampling="longvideobench", duration=item["duration"])


def _subtitles(item, args) -> list[str]:
    if not args.subtitles:
        return []
    from aurora.eval.frames import longvideobench_indices

    info = media.probe_video(item["video"])
    indices = longvideobench_indices(args.num_frames or NUM_FRAMES, item["duration"], info["fps"], info["total_frames"])
    times = [i / info["fps"] for i in indices]  # the published frame_timestamps
    subtitles = json.loads(Path(item["subtitle_path"]).read_text())
    return kept_subtitles(subtitles, times, item["subtitle_offset"], item["duration"])


def protocol(args) -> dict:
    return {"prompt_set": f"LongVideoBench {args.prompt_style}" + (" with subtitles" if args.subtitles else ""),
            "source": SOURCE, "prompt_style": args.prompt_style, "subtitles": bool(args.subtitles),
            "num_frames": args.num_frames or NUM_FRAMES,
            "sampling": "n = min(frames, int(duration)); frame i = int(int(duration * fps) / n) * i",
            "prompt": build_prompt("{question}", ["{option}"], ["{subtitles}"] if args.subtitles else [], args.prompt_style),
            "max_new_tokens": MAX_NEW_TOKENS, "answer_prefixes": ANSWER_PREFIXES,
            "unparsed": "a random option, seeded by the item id (published: unseeded random)",
            "accuracy": "right / questions, overall, per duration group and question category"}


def queries(item, args) -> list[Query]:
    prompt = build_prompt(item["question"], item["candidates"], _subtitles(item, args), args.prompt_style)
    return [Query(item["video"], prompt, frames=_frame_spec(item, args), max_new_tokens=MAX_NEW_TOKENS)]


def score(item, answers, judge, args) -> dict:
    letters = [chr(ord("A") + i) for i in range(len(item["candidates"]))]
    parsed, by_rule = parse_answer(answers[0], letters, seed=item["id"])
    return {"duration_group": item["duration_group"], "duration": item["duration"],
            "question_category": item["question_category"], "question": item["question"],
            "candidates": item["candidates"], "answer": item["answer"], "extracted": parsed,
            "parsed_by_rule": by_rule, "correct": parsed == item["answer"]}


def _count(records: list[dict]) -> dict:
    correct = sum(bool(r["correct"]) for r in records)
    return {"accuracy": percent(correct, len(records)), "correct": correct, "total": len(records)}


def _numeric_first(name: str):
    try:
        return 0, float(name)
    except ValueError:
        return 1, name


def aggregate(records, args) -> dict:
    results = {"overall": _count(records), "duration_group": {}, "question_category": {}}
    for key in ("duration_group", "question_category"):
        for name in sorted({str(r[key]) for r in records}, key=_numeric_first):
            results[key][name] = _count([r for r in records if str(r[key]) == name])
    results["random_guesses"] = sum(not r["parsed_by_rule"] for r in records)
    return results


def table(results) -> str:
    def row(name, r):
        return f"| {name} | {r['accuracy']:.2f} | {r['correct']} / {r['total']} |\n"

    text = "| split | accuracy | correct / total |\n|---|---|---|\n" + row("**overall**", results["overall"])
    for name, r in results["duration_group"].items():
        text += row(f"duration group {name} s", r)
    for name, r in results["question_category"].items():
        text += row(f"category: {name}", r)
    return text
