"""Open-ended VideoQA (MSVD-QA, MSRVTT-QA, ActivityNet-QA, TGIF-QA) judged with Video-ChatGPT's prompt.

Data: Video-ChatGPT's layout — `test_q.json` ([{"video_name", "question_id", "question"}, ...]) and
`test_a.json` ([{"answer", "question_id", "type"?}, ...]), paired by position as the published
inference script does — and a folder of videos named `video_name` + .mp4/.avi/.mov/.mkv (the
published search order) or .webm/.gif.

The model gets the question as it is (Video-ChatGPT; `--post-prompt` appends text, e.g. lmms-eval's
" Answer the question using a single word or phrase."). The judge gets the published messages
(mbzuai-oryx/Video-ChatGPT, quantitative_evaluation/evaluate_activitynet_qa.py) and replies with
{'pred': 'yes'|'no', 'score': 0-5}. As published: a verdict is "yes" when "yes" is in its pred
(lower-cased), else "no" when "no" is; accuracy = yes / (yes + no); score = mean of int(score).
"""

from __future__ import annotations

import json
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.judge import parse_pred_score
from aurora.eval.task import FAILURE_POLICIES, Query, find_video, mean, percent, require_videos

SUMMARY = "open-ended VideoQA (MSVD/MSRVTT/ActivityNet/TGIF) judged with Video-ChatGPT's yes/no + score prompt"
JUDGED = True
SOURCE = "mbzuai-oryx/Video-ChatGPT: quantitative_evaluation/evaluate_activitynet_qa.py"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")  # published four first

# Byte for byte as published (adjacent literals joined with no separator, quirks included).
QA_JUDGE_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer pairs. "
    "Your task is to compare the predicted answer with the correct answer and determine if they match meaningfully. Here's how you can accomplish the task:"
    "------"
    "##INSTRUCTIONS: "
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer."
)
QA_JUDGE_USER = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {pred}\n\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, with 5 indicating the highest meaningful match. "
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING."
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
    "For example, your response should look like this: {{'pred': 'yes', 'score': 4.8}}."
)


def qa_judge_messages(question: str, answer: str, pred: str) -> list[dict]:
    return [{"role": "system", "content": QA_JUDGE_SYSTEM},
            {"role": "user", "content": QA_JUDGE_USER.format(question=question, answer=answer, pred=pred)}]


def add_arguments(p) -> None:
    p.add_argument("--questions", required=True, help="test_q.json: [{video_name, question_id, question}, ...]")
    p.add_argument("--answers", required=True, help="test_a.json: [{answer, question_id, type?}, ...] (same order)")
    p.add_argument("--video-dir", dest="video_dir", required=True, help="folder of the videos (video_name + extension)")
    p.add_argument("--post-prompt", dest="post_prompt", default="", help="text appended to each question (default: none, as Video-ChatGPT)")


def _read_json(path: str) -> list:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path} must hold a JSON list")
    return data


def load_items(args) -> list[dict]:
    questions, answers = _read_json(args.questions), _read_json(args.answers)
    if len(questions) != len(answers):
        raise ConfigError(f"{args.questions} has {len(questions)} questions but {args.answers} has {len(answers)} answers")
    items = []
    for i, (q, a) in enumerate(zip(questions, answers)):  # paired by position, as published
        name = str(q["video_name"])
        items.append({"id": str(i), "question_id": q.get("question_id"), "video_name": name,
                      "video": find_video(args.video_dir, name, VIDEO_EXTENSIONS),
                      "question": q["question"], "answer": a["answer"], "type": a.get("type")})
    require_videos(items, "VideoQA")
    return items


# PLLaVA (magic-research/PLLaVA tasks/eval/eval_utils.py conv_eval_videoqabench): the instruction
# before the question, "\n" after it (user_query joins both with spaces), the video token first in
# the same message, the answer pre-filled with "\nAnswer: In the video,".
PROTOCOLS = ("official", "pllava")
PLLAVA_PRE = ("The input consists of a sequence of key frames from a video. Answer the question concisely first and "
              "followed by significant events, characters, or objects that appear throughout the frames. Question:")
PLLAVA_ANSWER = "\nAnswer: In the video,"
PLLAVA_SOURCE = "magic-research/PLLaVA: tasks/eval/videoqabench/pllava_eval_videoqabench.py, tasks/eval/eval_utils.py"


def protocol(args) -> dict:
    if getattr(args, "protocol", "official") == "pllava":
        return {"prompt_set": "PLLaVA's VideoQA evaluation + Video-ChatGPT QA judge", "variant": "pllava",
                "model_prompt_source": PLLAVA_SOURCE, "judge_prompt_source": SOURCE,
                "model_prompt": PLLAVA_PRE + " {question}" + args.post_prompt + " \n", "answer_prompt": PLLAVA_ANSWER,
                "template": "pllava_eval_interleaf",
                "accuracy": "yes / (yes + no); yes when 'yes' in pred.lower(), else no when 'no' in it (Video-ChatGPT)",
                "score": "mean of int(score) over judged items (Video-ChatGPT)",
                "judge_failure": FAILURE_POLICIES[args.judge_failure]}
    return {"prompt_set": "Video-ChatGPT QA judge", "variant": "official", "judge_prompt_source": SOURCE,
            "model_prompt": "{question}" + args.post_prompt,
            "accuracy": "yes / (yes + no); yes when 'yes' in pred.lower(), else no when 'no' in it (Video-ChatGPT)",
            "score": "mean of int(score) over judged items (Video-ChatGPT)",
            "judge_failure": FAILURE_POLICIES[args.judge_failure]}


def queries(item, args) -> list[Query]:
    if getattr(args, "protocol", "official") == "pllava":
        text = f"{PLLAVA_PRE} {item['question'] + args.post_prompt} \n"
        return [Query(item["video"], text, prefix=PLLAVA_ANSWER, template="pllava_eval_interleaf")]
    return [Query(item["video"], item["question"] + args.post_prompt)]


def score(item, answers, judge, args) -> dict:
    verdict = judge.ask(qa_judge_messages(item["question"], item["answer"], answers[0]), parse_pred_score)
    parsed = verdict.parsed or {}
    return {"question_id": item["question_id"], "question": item["question"], "answer": item["answer"],
            "type": item["type"], "judge": verdict.to_dict(), "pred": parsed.get("pred"), "score": parsed.get("score")}


def verdict_label(pred: str) -> str | None:
    """Video-ChatGPT's reading of a judge's pred: 'yes', 'no', or None (counted in neither)."""
    text = pred.lower()
    return "yes" if "yes" in text else "no" if "no" in text else None


def tally(records: list[dict], policy: str) -> dict:
    """Accuracy (%) and mean score of judged QA records under a failure policy."""
    yes = no = failures = 0
    scores = []
    for record in records:
        if record["pred"] is None:
            failures += 1
            if policy == "skip":
                continue
            label, value = "no", 0
        else:
            label, value = verdict_label(record["pred"]), int(record["score"])
        yes += label == "yes"
        no += label == "no"
        scores.append(value)
    return {"accuracy": percent(yes, yes + no), "score": mean(scores), "yes": yes, "no": no,
            "judged": len(scores), "judge_failures": failures}


def aggregate(records, args) -> dict:
    results = {"overall": tally(records, args.judge_failure)}
    types = sorted({str(r["type"]) for r in records if r.get("type") is not None})
    if types:
        results["by_type"] = {t: tally([r for r in records if str(r.get("type")) == t], args.judge_failure)
                              for t in types}
    return results


def table(results) -> str:
    rows = [("overall", results["overall"])] + [(f"type {t}", r) for t, r in results.get("by_type", {}).items()]
    text = "| split | accuracy | score | yes | no | judge failures |\n|---|---|---|---|---|---|\n"
    for name, r in rows:
        text += (f"| {name} | {_fmt(r['accuracy'], 2)} | {_fmt(r['score'], 2)} | {r['yes']} | {r['no']} "
                 f"| {r['judge_failures']} |\n")
    return text


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
