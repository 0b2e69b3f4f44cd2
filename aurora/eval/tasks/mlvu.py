"""MLVU (dev, multiple-choice tasks): the official VideoChat2 protocol, the mean over tasks (M-Avg),
and accuracy by video duration.

Source: JUNJIE99/MLVU at commit fd060c1, evaluation/models/videochat2/choice_bench.py (the
reference run: 16 frames at segment middles, the system text, "\\nOnly give the best option.", the
answer pre-filled with "Best option:(", 100 new tokens, greedy, `check_ans`) and
evaluation/multiple_choice_evaluation/choice_bench.py (task files, the average over tasks).

Data: the release's json folder (`--json-dir`: 1_plotQA.json, 2_needle.json, 3_ego.json,
4_count.json, 5_order.json, 6_anomaly_reco.json, 7_topic_reasoning.json; rows {video, duration,
question, candidates, answer, question_type}) and its video folder (`--video-root`, one sub-folder
per task, named as the json file's stem (1_plotQA) or as the task (plotQA)).

Prompt: "Question: {q}\\nOptions:\\n(A) ...\\n(B) ..." (`qa_template`) then "\\nOnly give the best
option."; the published system text goes in the user turn before it (Aurora's templates take no
system slot; MVBench does the same). Check (`check_ans`): the stripped reply up to its first ")" must
equal the answer's letter ("A) x" and "A" are right, "A." is not). Accuracy per task; M-Avg = the
mean of the task accuracies (published); overall item accuracy too; and, Aurora's own addition,
accuracy by video duration in buckets [0, 3), [3, 10), [10, 30), [30, inf) minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.task import FrameSpec, Query, percent
from aurora.eval.tasks.mvbench import qa_template  # the same published question layout (VideoChat2)

SUMMARY = "MLVU dev multiple choice: official 16 frames and prompt, M-Avg over tasks, accuracy by duration"
JUDGED = False
SOURCE = ("JUNJIE99/MLVU@fd060c1: evaluation/models/videochat2/choice_bench.py, "
          "evaluation/multiple_choice_evaluation/choice_bench.py")
NUM_FRAMES = 16
MAX_NEW_TOKENS = 100
SYSTEM = ("Carefully watch this video and pay attention to every detail. Based on your observations, select the best "
          "option that accurately addresses the question.\n")
QUESTION_PROMPT = "\nOnly give the best option."
ANSWER_PROMPT = "Best option:("
TASKS = {"plotQA": "1_plotQA.json", "needle": "2_needle.json", "ego": "3_ego.json", "count": "4_count.json",
         "order": "5_order.json", "anomaly_reco": "6_anomaly_reco.json", "topic_reasoning": "7_topic_reasoning.json"}
DURATION_BUCKETS = ((0, 180, "< 3 min"), (180, 600, "3-10 min"), (600, 1800, "10-30 min"), (1800, float("inf"), ">= 30 min"))


def check_answer(pred: str, gt: str) -> bool:
    """The published check_ans (VideoChat2's run; its reply is stripped first)."""
    gt_option = gt[gt.index("(") + 1:gt.index(")")]
    pred = pred.strip()
    if ")" in pred:
        pred = pred[:pred.index(")")]
    return pred == gt_option


def duration_bucket(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return next(name for low, high, name in DURATION_BUCKETS if low <= seconds < high)


def add_arguments(p) -> None:
    p.add_argument("--json-dir", dest="json_dir", required=True, help="the release's json folder (1_plotQA.json, ...)")
    p.add_argument("--video-root", dest="video_root", required=True, help="the release's video folder (one sub-folder per task)")
    p.add_argument("--tasks", help="comma-separated tasks (plotQA, needle, ego, count, order, anomaly_reco, "
                                   "topic_reasoning; default: all with a json file)")


def _selected(args) -> list[str]:
    if not args.tasks:
        return [t for t, file in TASKS.items() if (Path(args.json_dir) / file).is_file()]
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown MLVU task {unknown[0]!r}: choose from {', '.join(TASKS)}")
    return chosen


def _video(root: Path, task: str, name: str) -> Path:
    for folder in (TASKS[task][:-5], task):
        if (root / folder / name).is_file():
            return root / folder / name
    return root / TASKS[task][:-5] / name


def load_items(args) -> list[dict]:
    tasks = _selected(args)
    if not tasks:
        raise ConfigError(f"no MLVU task files (1_plotQA.json, ...) in {args.json_dir}")
    items = []
    for task in tasks:
        path = Path(args.json_dir) / TASKS[task]
        if not path.is_file():
            raise ConfigError(f"{path} not found")
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not JSON ({e})") from None
        for i, row in enumerate(rows):
            question, answer = qa_template(row)
            video = _video(Path(args.video_root), task, row["video"])
            if not video.is_file():
                raise ConfigError(f"MLVU video {video} not found; check --video-root")
            items.append({"id": f"{task}/{i}", "task": task, "question": question, "answer": answer,
                          "video": str(video), "duration": row.get("duration")})
    return items


def protocol(args) -> dict:
    return {"prompt_set": "MLVU official (VideoChat2 choice_bench.py)", "source": SOURCE,
            "num_frames": args.num_frames or NUM_FRAMES, "sampling": "segment middles over the whole clip",
            "system_in_user_turn": SYSTEM, "question_prompt": QUESTION_PROMPT, "answer_prompt": ANSWER_PROMPT,
            "max_new_tokens": MAX_NEW_TOKENS, "tasks": _selected(args),
            "check": "stripped reply up to its first ')' equals the answer letter (check_ans)",
            "average": "M-Avg: mean of task accuracies (published); duration buckets are Aurora's",
            "duration_buckets_minutes": [[low / 60, high / 60] for low, high, _ in DURATION_BUCKETS]}


def queries(item, args) -> list[Query]:
    spec = FrameSpec(num_frames=args.num_frames or NUM_FRAMES)
    return [Query(item["video"], SYSTEM + item["question"] + QUESTION_PROMPT, prefix=ANSWER_PROMPT, frames=spec,
                  max_new_tokens=MAX_NEW_TOKENS)]


def score(item, answers, judge, args) -> dict:
    return {"task": item["task"], "question": item["question"], "answer": item["answer"], "pred": answers[0],
            "duration": item["duration"], "duration_bucket": duration_bucket(item["duration"]),
            "correct": check_answer(answers[0], item["answer"])}


def _count(records: list[dict]) -> dict:
    correct = sum(bool(r["correct"]) for r in records)
    return {"accuracy": percent(correct, len(records)), "correct": correct, "total": len(records)}


def aggregate(records, args) -> dict:
    tasks = {t: _count([r for r in records if r["task"] == t]) for t in dict.fromkeys(r["task"] for r in records)}
    order = [name for *_, name in DURATION_BUCKETS] + ["unknown"]
    durations = {name: _count([r for r in records if r["duration_bucket"] == name])
                 for name in order if any(r["duration_bucket"] == name for r in records)}
    return {"m_avg": sum(t["accuracy"] for t in tasks.values()) / len(tasks), "overall": _count(records),
            "tasks": tasks, "duration": durations}


def table(results) -> str:
    def row(name, r):
        return f"| {name} | {r['accuracy']:.2f} | {r['correct']} / {r['total']} |\n"

    text = "| split | accuracy | correct / total |\n|---|---|---|\n"
    for task, r in results["tasks"].items():
        text += row(task, r)
    for name, r in results["duration"].items():
        text += row(f"duration {name}", r)
    text += row("all items", results["overall"])
    return text + f"| **M-Avg** | **{results['m_avg']:.2f}** | mean over {len(results['tasks'])} tasks |\n"
