"""MMBench (v1.0 and v1.1, English and Chinese) with the official CircularEval and answer matching.

Protocol: VLMEvalKit (open-compass/VLMEvalKit at commit e8e78f0), the toolkit the MMBench authors
point to: vlmeval/dataset/image_mcq.py (`ImageMCQDataset.build_prompt`, `evaluate_heuristic`),
vlmeval/dataset/utils/multiple_choice.py (CircularEval, judge prompts, `report_acc`) and
vlmeval/utils/matching_util.py (`can_infer`).

Data: the release's TSV (MMBench_DEV_EN.tsv, MMBench_DEV_CN_V11.tsv, ...; columns index, question,
hint, A-E, answer, category, l2-category, split, image as base64). The TSV already holds each
question once per rotation of its options: rows whose index differs by a multiple of 1,000,000
are one question (`g_index = index % 1e6`), and an image cell of at most 64 characters names
the row whose image it shares. Empty cells and pandas' default NA strings ("nan", "None", "N/A",
...) count as missing, since the published code reads the TSV with `pd.read_csv`. Images are
written once to `--image-dir` (default OUT/images) and read through `aurora.media` (one frame).

Prompt "vlmevalkit" (default, `build_prompt`): "Hint: {hint}\\n" when there is one, "Question:
{question}\\n", "Options:\\n" and "{letter}. {text}\\n" per option, then "Please select the correct
answer from the options above. \\n". Prompt "lmms-eval" (lmms_eval/tasks/mmbench/en_utils.py and
cn_utils.py at 75571cf): "{hint} {question} {sys_prompt}\\n{A. ...\\nB. ...}" then "\\n" and the
language's post prompt (1024 / 256 new tokens for en / cn, as its YAML).

CircularEval (`eval_circular_group`): a question counts only if every rotation is answered right.
Each answer is first matched by rules (`can_infer`: an option letter standing alone among the
words once punctuation is blanked, near the end of the reply; else "answer is X"; else the one
option whose text the reply contains); any rotation matched to a wrong letter fails the question
at once; if all match right it passes; otherwise, with a judge (`--judge-url`, optional), each
unmatched rotation in order is sent with the published matching prompt (the Chinese one when the
question holds CJK characters), up to 3 asks read with the same rules, the first wrong one failing
the question; after 3 unreadable replies the published code draws a random option or Z — here
drawn from a generator seeded by the row index, so a rerun draws the same. Without a judge an
unmatched rotation fails the question (the published `exact_matching` policy). Accuracy: share of
questions passed, overall, per l2-category (with the published abbreviations) and per category.
"""

from __future__ import annotations

import csv
import random
import re
import string
import sys
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.images import write_base64_image
from aurora.eval.task import Query, percent

SUMMARY = "MMBench v1.0/v1.1 (en/cn): CircularEval, rule-based answer matching, optional judge fallback"
JUDGED = "optional"  # --judge-url turns on the published judge fallback for unmatched answers
SOURCE = ("open-compass/VLMEvalKit@e8e78f0: vlmeval/dataset/image_mcq.py, vlmeval/dataset/utils/multiple_choice.py, "
          "vlmeval/utils/matching_util.py; lmms-eval@75571cf: lmms_eval/tasks/mmbench (prompt 'lmms-eval')")
ROTATION_OFFSET = 1_000_000  # rows index, index + 1e6, ... are the rotations of one question
JUDGE_ASKS = 3  # extract_answer_from_item's retry
# pandas.read_csv's default NA strings: such a cell is missing in the published pipeline.
NA_STRINGS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
              "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}

VLMEVALKIT_INSTRUCTION = "Please select the correct answer from the options above. \n"
LMMS_EVAL = {  # language -> (sys_prompt of mmbench.yaml / mmbench_cn.yaml, post_prompt, max_new_tokens)
    "en": ("There are several options:", "\nAnswer with the option's letter from the given choices directly.", 1024),
    "cn": ("有如下几个选项：", "\n请直接使用所提供的选项字母作为答案回答。", 256),
}
PROMPT_STYLES = ("vlmevalkit", "lmms-eval")

JUDGE_PROMPT = (
    "You are an AI assistant who will help me to match an answer with several options of a single-choice question. "
    "You are provided with a question, several options, and an answer, and you need to find which option is most "
    "similar to the answer. If the meaning of all options are significantly different from the answer, output Z. "
    "Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n"
    "Example 1: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: a cute teddy bear\nYour output: A\n"
    "Example 2: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: Spider\nYour output: Z\n"
    "Example 3: \n"
    "Question: {}?\nOptions: {}\nAnswer: {}\nYour output: "
)
JUDGE_PROMPT_CN = (
    "你是一个帮助我匹配答案与单选题中多个选项的 AI 助手。"
    "你会被提供：一个问题，多个选项，一个答案。你的任务是找到与答案意义最相近的选项。"
    "如果所有选项的意义都与答案显著不同，则输出 Z。"
    "你应该输出一个单个的大写字母，例如 A, B, C, D（如果它们是有效选项），或 Z。"
    "例 1:"
    "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 一只可爱的泰迪熊\n输出: A\n"
    "例 2: \n"
    "问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 蜘蛛\n输出: Z\n"
    "例 3: \n"
    "问题: {}?\n选项: {}\n答案: {}\n输出: "
)
REJECTIONS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
              "I'm sorry, but without the image provided", "Cannot determine the answer")
L2_ABBREVIATIONS = {"coarse_perception": "CP", "finegrained_perception (instance-level)": "FP-S",
                    "finegrained_perception (cross-instance)": "FP-C", "logic_reasoning": "LR",
                    "relation_reasoning": "RR", "attribute_reasoning": "AR"}
_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


# ---- answer matching (can_infer) -----------------------------------------------------------------

def infer_option(answer: str, choices: dict[str, str]) -> str | None:
    """`can_infer_option`: a letter from the reply's words, 'Z' for a refusal, else None."""
    for refusal in REJECTIONS:
        if refusal in answer:
            return "Z"
    blanked = answer
    for char in ".()[],:;!*#{}":
        blanked = blanked.replace(char, " ")
    words = blanked.split()
    count = sum(letter in words for letter in choices)
    if count == 1:
        for letter in choices:
            if letter in words and words.index(letter) > len(words) - 5:  # near the end of the reply
                return letter
    elif count == 0 and "Z" in words:
        return "Z"
    match = _VERBOSE_ANSWER.search(answer)
    if match and match.group(1).upper() in choices:
        return match.group(1).upper()
    return None


def infer_text(answer: str, choices: dict[str, str]) -> str | None:
    """`can_infer_text`: the one option whose text the (not too long) reply contains."""
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    found = [letter for letter, text in choices.items() if str(text).lower() in answer]
    return found[0] if len(found) == 1 else None


def infer(answer: str, choices: dict[str, str]) -> str | None:
    """`can_infer`: the option letter (or 'Z') a reply names, None when the rules cannot tell."""
    answer = str(answer)
    return infer_option(answer, choices) or infer_text(answer, choices)


def option_string(choices: dict[str, str]) -> str:
    """`build_option_str`, the options as the judge sees them."""
    return "There are several options: \n" + "".join(f"{letter}. {text}\n" for letter, text in choices.items())


def judge_prompt(question: str, choices: dict[str, str], prediction: str) -> str:
    template = JUDGE_PROMPT_CN if re.search("[\u4e00-\u9fff]", question) else JUDGE_PROMPT
    return template.format(question, option_string(choices), prediction)


# ---- prompts --------------------------------------------------------------------------------------

def build_prompt(row: dict, style: str, language: str) -> str:
    choices, hint = row["options"], row["hint"]
    if style == "vlmevalkit":
        prompt = f"Hint: {hint}\n" if hint is not None else ""
        prompt += f"Question: {row['question']}\n"
        if choices:
            prompt += "Options:\n" + "".join(f"{letter}. {text}\n" for letter, text in choices.items())
            prompt += VLMEVALKIT_INSTRUCTION
        return prompt
    sys_prompt, post_prompt, _ = LMMS_EVAL[language]
    options = (f"{sys_prompt}\n" + "".join(f"{letter}. {text}\n" for letter, text in sorted(choices.items()))).rstrip("\n")
    query = f"{hint} {row['question']} {options}" if hint is not None else f"{row['question']} {options}"
    return f"{query}\n{post_prompt}"


# ---- data -----------------------------------------------------------------------------------------

def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="the release's TSV, e.g. MMBench_DEV_EN_V11.tsv")
    p.add_argument("--version", choices=("v1.0", "v1.1"), help="default: v1.1 when the file name says V11, else v1.0")
    p.add_argument("--lang", choices=("en", "cn"), help="default: cn when the file name says CN, else en")
    p.add_argument("--prompt-style", dest="prompt_style", choices=PROMPT_STYLES, default="vlmevalkit",
                   help="vlmevalkit (default, the official toolkit's prompt) or lmms-eval")
    p.add_argument("--image-dir", dest="image_dir", help="where the TSV's images are written (default OUT/images)")


def _version(args) -> str:
    return args.version or ("v1.1" if "V11" in Path(args.data).name.upper() else "v1.0")


def _language(args) -> str:
    return args.lang or ("cn" if "_CN" in Path(args.data).name.upper() else "en")


def _cell(row: dict, key: str) -> str | None:
    value = row.get(key)
    return None if value is None or value in NA_STRINGS else value


def read_tsv(path: Path) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    csv.field_size_limit(sys.maxsize)  # base64 images are long cells
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    missing = {"index", "question", "answer", "image"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise ConfigError(f"{path} is not an MMBench TSV (missing columns: {', '.join(sorted(missing)) or 'all rows'})")
    return rows


def load_items(args) -> list[dict]:
    path = Path(args.data)
    rows = read_tsv(path)
    images = {row["index"]: row["image"] for row in rows}
    image_dir = Path(args.image_dir or Path(args.out) / "images")
    groups: dict[int, list[dict]] = {}
    for row in rows:
        try:
            index = int(row["index"])
        except ValueError:
            raise ConfigError(f"{path}: index {row['index']!r} is not an integer") from None
        answer = _cell(row, "answer")
        if answer is None:
            raise ConfigError(f"{path}: question {index} has no answer (a test split? use the dev TSV)")
        choices = {c: row[c] for c in string.ascii_uppercase if _cell(row, c) is not None}
        groups.setdefault(index % ROTATION_OFFSET, []).append(
            {"index": index, "question": row["question"], "hint": _cell(row, "hint"), "options": choices,
             "answer": answer, "category": row.get("category"), "l2_category": row.get("l2-category"),
             "split": row.get("split"), "image_cell": row["image"]})
    items = []
    for g_index, group in groups.items():
        group.sort(key=lambda r: r["index"])
        main = group[0]
        if main["index"] != g_index:
            raise ConfigError(f"{path}: rotations of question {g_index} without the question itself")
        cell = main.pop("image_cell")
        if 0 < len(cell) <= 64:  # a reference to the row that holds the image
            cell = images.get(cell, "")
            if len(cell) <= 64:
                raise ConfigError(f"{path}: question {g_index} refers to an image that is not in the file")
        image = write_base64_image(cell, image_dir, str(g_index))
        for rotation in group[1:]:
            rotation.pop("image_cell")
        items.append({"id": str(g_index), "g_index": g_index, "image": image, "category": main["category"],
                      "l2_category": main["l2_category"], "split": main["split"], "rotations": group})
    return items


def protocol(args) -> dict:
    style, language = args.prompt_style, _language(args)
    return {"prompt_set": f"MMBench {_version(args)} {language}, {style} prompt", "source": SOURCE,
            "version": _version(args), "language": language, "prompt_style": style,
            "prompt": build_prompt({"question": "{question}", "hint": "{hint}", "options": {"A": "...", "B": "..."}},
                                   style, language),
            "evaluation": "CircularEval: right only if every rotation is right (rotations as in the TSV)",
            "matching": "can_infer rules first; judge fallback (3 asks, then a seeded random option or Z) "
                        "when --judge-url is given, else unmatched = wrong (exact_matching)",
            "judge_prompt": JUDGE_PROMPT, "judge_prompt_cn": JUDGE_PROMPT_CN,
            "accuracy": "questions passed / questions, overall, per l2-category and category"}


def queries(item, args) -> list[Query]:
    language = _language(args)
    limit = LMMS_EVAL[language][2] if args.prompt_style == "lmms-eval" else None
    return [Query(item["image"], build_prompt(row, args.prompt_style, language), max_new_tokens=limit)
            for row in item["rotations"]]


# ---- scoring --------------------------------------------------------------------------------------

def _ask_judge(judge, row: dict, prediction: str) -> tuple[str, str, dict]:
    """(option, how it was found, judge record) for one unmatched rotation."""
    messages = [{"role": "user", "content": judge_prompt(row["question"], row["options"], prediction)}]
    verdict = judge.ask(messages, parse=lambda reply: infer(reply, row["options"]))
    if verdict.ok:
        return verdict.parsed, "judge", verdict.to_dict()
    options = list(row["options"]) + ["Z"]
    return random.Random(row["index"]).choice(options), "random", verdict.to_dict()


def circular(rows: list[dict], answers: list[str], judge=None) -> tuple[bool, list[dict]]:
    """The published eval_circular_group; returns (passed, per-rotation details)."""
    details = [{"index": row["index"], "answer": row["answer"], "matched": infer(answer, row["options"]),
                "matched_by": "rule", "judge": None} for row, answer in zip(rows, answers)]
    for d in details:
        if d["matched"] is None:
            d["matched_by"] = None
        d["correct"] = d["matched"] == d["answer"] if d["matched"] else None
    if any(d["correct"] is False for d in details):  # a rule-matched wrong rotation fails the question
        return False, details
    if all(d["correct"] for d in details):
        return True, details
    if judge is None:  # exact matching: an unmatched rotation is a failure
        return False, details
    for row, answer, d in zip(rows, answers, details):
        if d["matched"] is not None:
            continue
        d["matched"], d["matched_by"], d["judge"] = _ask_judge(judge, row, answer)
        d["correct"] = d["matched"] == d["answer"]
        if not d["correct"]:
            return False, details
    return True, details


def score(item, answers, judge, args) -> dict:
    passed, details = circular(item["rotations"], answers, judge)
    return {"category": item["category"], "l2_category": item["l2_category"], "split": item["split"],
            "question": item["rotations"][0]["question"], "answer": item["rotations"][0]["answer"],
            "options": item["rotations"][0]["options"], "rotations": details, "hit": passed, "correct": passed}


def aggregate(records, args) -> dict:
    def accuracy(group: list[dict]) -> dict:
        hits = sum(bool(r["hit"]) for r in group)
        return {"accuracy": percent(hits, len(group)), "correct": hits, "total": len(group)}

    results = {"overall": accuracy(records), "l2_category": {}, "category": {}}
    for key, field in (("l2_category", "l2_category"), ("category", "category")):
        names = sorted({str(r[field]) for r in records if r.get(field) is not None})
        for name in names:
            label = L2_ABBREVIATIONS.get(name, name) if key == "l2_category" else name
            results[key][label] = accuracy([r for r in records if str(r.get(field)) == name])
    results["judged_rotations"] = sum(d["matched_by"] == "judge" for r in records for d in r["rotations"])
    results["random_rotations"] = sum(d["matched_by"] == "random" for r in records for d in r["rotations"])
    return results


def table(results) -> str:
    def row(name, r):
        return f"| {name} | {r['accuracy']:.2f} | {r['correct']} / {r['total']} |\n"

    text = "| split | CircularEval accuracy | passed / questions |\n|---|---|---|\n" + row("**overall**", results["overall"])
    for key in ("l2_category", "category"):
        for name, r in results[key].items():
            text += row(f"{key.replace('_', '-')}: {name}", r)
    return text
