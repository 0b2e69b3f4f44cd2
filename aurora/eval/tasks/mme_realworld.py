"""MME-RealWorld (English and Chinese; perception and reasoning): the official prompt, letter
extraction and per-task accuracy.

Source: yfzhang114/MME-RealWorld at commit 87096fc — evaluation/model_vqa_mme_real_world.py (the
English prompt and its 64-token default), evaluation/download_and_prepare_prompt.py (the Chinese
prompt, `MMERealWorld.build_prompt` with the MME-RealWorld-CN instruction) and
evaluation/eval_your_results.py (extraction and accuracy). `--prompt-style lmms-eval` uses
lmms_eval/tasks/mme_realworld/utils.py (lmms-eval at 75571cf) instead, 16 new tokens.

Data: the release's question file (MME_RealWorld.json / MME_RealWorld_CN.json: Question_id, Image,
Text, Answer choices ["(A) ...", ...], Ground truth, Task, Subtask, Category) and the folder its
Image paths are relative to (`--image-dir`); or the Base64 release's JSON (index, image or bytes as
base64, question, multi-choice options, answer, category "<Task>/<Subtask>", l2-category — read as
lmms-eval reads it), whose images are written once to `--image-dir` (default OUT/images). Images
go through `aurora.media` (one frame).

Extraction (`extract_characters_regex`): strip, delete the answer prefixes (the published list,
whose two missing commas glue "The best option is" to "The correct option is" and "Best answer:"
to "Best option:" — kept), "" for more than 10 words without any of A-E, else the first A-E
anywhere; with no letter at all, the letter of the first choice that contains the whole reply —
so an empty reply reads "A", a quirk of the published script kept as is. Right when it equals the
ground truth. Accuracy (as the script prints it): per category (categories holding "attribute"
merged into "<first part>/attribute"), per subtask, per task (Perception, Reasoning) and overall,
each correct / questions; the number of "E" answers per subtask and task is reported too.
"""

from __future__ import annotations

import re
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.images import write_base64_image
from aurora.eval.records import read_json_or_jsonl
from aurora.eval.task import Query, percent
from aurora.eval.tasks.videomme import LEGACY_ANSWER_PREFIXES

SUMMARY = "MME-RealWorld (en/cn, perception/reasoning): official prompt and letter extraction, per-task accuracy"
JUDGED = False
SOURCE = ("yfzhang114/MME-RealWorld@87096fc: evaluation/model_vqa_mme_real_world.py (English prompt), "
          "evaluation/download_and_prepare_prompt.py (Chinese prompt), evaluation/eval_your_results.py (scoring)")
TEST_PROMPT = ("Select the best answer to the above multiple-choice question based on the image. "
               "Respond with only the letter (A, B, C, D, or E) of the correct option.")
TEST_PROMPT_CN = "根据图像选择上述多项选择题的最佳答案。只需回答正确选项的字母（A, B, C, D 或 E）。\n 最佳答案为："
LMMS_EVAL_CN = "根据图像选择上述多项选择题的最佳答案。只需回答正确选项的字母（A, B, C, D 或 E）。"
MAX_NEW_TOKENS = {"official": 64, "lmms-eval": 16}
TASKS = ("Perception", "Reasoning")
# As published: MME-RealWorld's eval script keeps Video-MME's earlier prefix list, missing commas and all.
ANSWER_PREFIXES = LEGACY_ANSWER_PREFIXES


def build_prompt(text: str, choices: list[str], language: str, style: str = "official") -> str:
    if style == "official" and language == "en":  # model_vqa_mme_real_world.py
        return text + " The choices are listed below: \n" + "".join(c + "\n" for c in choices) + TEST_PROMPT \
            + "\nThe best answer is:"
    if style == "official":  # download_and_prepare_prompt.py, MME-RealWorld-CN
        return text + "选项如下所示:\n" + "\n".join(choices) + "\n" + TEST_PROMPT_CN + "\nThe best answer is:"
    if language == "en":  # lmms-eval mme_realworld_doc_to_text
        return (text + " The choices are listed below:\n" + "\n".join(choices) + "\n" + TEST_PROMPT
                + "\nThe best answer is: ")
    return text + " 选项如下所示:\n" + "\n".join(choices) + "\n" + LMMS_EVAL_CN + "\n最佳答案为： "


def extract_answer(text: str, choices: list[str]) -> str:
    """The official extraction; "" when no letter can be read."""
    s = text.strip()
    for prefix in ANSWER_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCDE]", s):
        return ""
    match = re.search(r"[ABCDE]", s)
    if match is None:
        for choice in choices:
            if s.lower() in choice.lower():
                return choice[1]
        return ""
    return match[0]


def category_key(category: str) -> str:
    category = category.lower()
    return category.split("/")[0] + "/attribute" if "attribute" in category else category


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="MME_RealWorld.json or MME_RealWorld_CN.json (the release's questions)")
    p.add_argument("--image-dir", dest="image_dir",
                   help="the folder the questions' Image paths are relative to (Base64 files: where images are written, "
                        "default OUT/images)")
    p.add_argument("--lang", choices=("en", "cn"), help="default: cn when the file name says CN, else en")
    p.add_argument("--tasks", help="Perception, Reasoning or both, comma-separated (default: both)")
    p.add_argument("--prompt-style", dest="prompt_style", choices=("official", "lmms-eval"), default="official")


def _language(args) -> str:
    return args.lang or ("cn" if "CN" in Path(args.data).name.upper() else "en")


def _tasks(args) -> list[str]:
    if not args.tasks:
        return list(TASKS)
    chosen = [t.strip().capitalize() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown MME-RealWorld task {unknown[0]!r}: choose Perception and/or Reasoning")
    return chosen


def _official_row(row: dict, args) -> dict:
    if not args.image_dir:
        raise ConfigError("MME-RealWorld's question file names image files: pass --image-dir (the folder they are in)")
    return {"id": str(row["Question_id"]), "task": row["Task"].capitalize(), "subtask": row["Subtask"],
            "category": row["Category"], "question": row["Text"], "choices": list(row["Answer choices"]),
            "answer": row["Ground truth"], "image": str(Path(args.image_dir) / row["Image"])}


def _base64_task(row: dict) -> str:
    return "Perception" if "perception" in row["category"].lower() else "Reasoning"


def _base64_row(row: dict, args) -> dict:
    """A row of the Base64 release, read as lmms-eval's mme_realworld_process_results reads it."""
    image = write_base64_image(row.get("image") or row["bytes"], Path(args.image_dir or Path(args.out) / "images"),
                               str(row["index"]).replace("/", "_"))
    return {"id": str(row["index"]), "task": _base64_task(row), "subtask": row["category"].split("/")[-1],
            "category": row["l2-category"], "question": row["question"],
            "choices": list(row["multi-choice options"]), "answer": row["answer"], "image": image}


def load_items(args) -> list[dict]:
    tasks = _tasks(args)
    items = []
    for row in read_json_or_jsonl(Path(args.data)):
        try:
            if "multi-choice options" in row and _base64_task(row) not in tasks:
                continue  # no image written for a split left out
            item = _base64_row(row, args) if "multi-choice options" in row else _official_row(row, args)
        except (KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{args.data} is not an MME-RealWorld question file (missing {e})") from None
        if item["task"] in tasks:
            items.append(item)
    missing = [item for item in items if not Path(item["image"]).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} MME-RealWorld images not found (first: {missing[0]['image']}); check --image-dir")
    return items


def protocol(args) -> dict:
    language, style = _language(args), args.prompt_style
    return {"prompt_set": f"MME-RealWorld {language}, {style} prompt", "source": SOURCE, "language": language,
            "prompt_style": style, "tasks": _tasks(args),
            "prompt": build_prompt("{question}", ["(A) ...", "(B) ..."], language, style),
            "max_new_tokens": MAX_NEW_TOKENS[style], "answer_prefixes": ANSWER_PREFIXES,
            "accuracy": "correct / questions per category, subtask, task and overall (eval_your_results.py)"}


def queries(item, args) -> list[Query]:
    prompt = build_prompt(item["question"], item["choices"], _language(args), args.prompt_style)
    return [Query(item["image"], prompt, max_new_tokens=MAX_NEW_TOKENS[args.prompt_style])]


def score(item, answers, judge, args) -> dict:
    extracted = extract_answer(answers[0], item["choices"])
    return {"task": item["task"], "subtask": item["subtask"], "category": category_key(item["category"]),
            "question": item["question"], "choices": item["choices"], "answer": item["answer"],
            "extracted": extracted, "correct": extracted == item["answer"]}


def _count(records: list[dict]) -> dict:
    correct = sum(bool(r["correct"]) for r in records)
    return {"accuracy": percent(correct, len(records)), "correct": correct, "total": len(records),
            "answered_E": sum(r["extracted"] == "E" for r in records)}


def aggregate(records, args) -> dict:
    results = {"overall": _count(records), "tasks": {}}
    for task in TASKS:
        mine = [r for r in records if r["task"] == task]
        if not mine:
            continue
        subtasks = {}
        for subtask in dict.fromkeys(r["subtask"] for r in mine):
            group = [r for r in mine if r["subtask"] == subtask]
            categories = {c: _count([r for r in group if r["category"] == c]) for c in dict.fromkeys(r["category"] for r in group)}
            subtasks[subtask] = {**_count(group), "categories": categories}
        results["tasks"][task] = {**_count(mine), "subtasks": subtasks}
    return results


def table(results) -> str:
    def row(name, r):
        return f"| {name} | {r['accuracy']:.2f} | {r['correct']} / {r['total']} | {r['answered_E']} |\n"

    text = "| split | accuracy | correct / total | answered E |\n|---|---|---|---|\n"
    for task, t in results["tasks"].items():
        text += row(f"**{task}**", t)
        for subtask, s in t["subtasks"].items():
            text += row(f"{task} / {subtask}", s)
    return text + row("**overall**", results["overall"])
