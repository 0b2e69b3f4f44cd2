"""VCG, Video-ChatGPT's video-based generative performance benchmark: five judged dimensions.

Data (Video-ChatGPT's release): `generic_qa.json` ([{"Q", "A", "video_name"}, ...]; judged for
correctness, detail orientation and context), `temporal_qa.json` (same layout; temporal) and
`consistency_qa.json` ([{"Q1", "Q2", "A", "video_name"}, ...]; the model answers both questions;
consistency), and a folder of the videos (video_name + .mp4/.avi/.mov/.mkv, the published order).

The model gets each question as it is. The judge prompts are byte for byte those of
mbzuai-oryx/Video-ChatGPT quantitative_evaluation/evaluate_benchmark_{1..5}_*.py, quirks included
(the example reply `{''score': 4.8}`); each dimension is the mean of int(score) over its items.
"""

from __future__ import annotations

from aurora.errors import ConfigError
from aurora.eval.judge import parse_score
from aurora.eval.task import FAILURE_POLICIES, Query, find_video, mean, require_videos
from aurora.eval.tasks.videoqa import VIDEO_EXTENSIONS, _read_json

SUMMARY = "VCG (Video-ChatGPT generative benchmark): correctness, detail, context, temporal, consistency"
JUDGED = True
SOURCE = "mbzuai-oryx/Video-ChatGPT: quantitative_evaluation/evaluate_benchmark_{1..5}_*.py"
DIMENSIONS = ("correctness", "detail_orientation", "context", "temporal", "consistency")
SPLIT_DIMENSIONS = {"generic": ("correctness", "detail_orientation", "context"), "temporal": ("temporal",),
                    "consistency": ("consistency",)}

_QA_BLOCK = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\n"
    "Correct Answer: {answer}\n"
    "Predicted Answer: {pred}\n\n"
)
_TAIL = (
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
    "For example, your response should look like this: {{''score': 4.8}}."
)

# (system, user template) per dimension, byte for byte as published.
JUDGE_PROMPTS = {
    "correctness": (
        "You are an intelligent chatbot designed for evaluating the factual accuracy of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if they are factually consistent. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the factual consistency between the predicted answer and the correct answer. The predicted answer should not contain any misinterpretations or misinformation.\n"
        "- The predicted answer must be factually accurate and align with the video content.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Evaluate the factual accuracy of the prediction compared to the answer.",
        _QA_BLOCK
        + "Provide your evaluation only as a factual accuracy score where the factual accuracy score is an integer value between 0 and 5, with 5 indicating the highest level of factual consistency. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the factual accuracy score in INTEGER, not STRING."
        + _TAIL,
    ),
    "detail_orientation": (
        "You are an intelligent chatbot designed for evaluating the detail orientation of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine its level of detail, considering both completeness and specificity. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Check if the predicted answer covers all major points from the video. The response should not leave out any key aspects.\n"
        "- Evaluate whether the predicted answer includes specific details rather than just generic points. It should provide comprehensive information that is tied to specific elements of the video.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Provide a single evaluation score that reflects the level of detail orientation of the prediction, considering both completeness and specificity.",
        _QA_BLOCK
        + "Provide your evaluation only as a detail orientation score where the detail orientation score is an integer value between 0 and 5, with 5 indicating the highest level of detail orientation. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the detail orientation score in INTEGER, not STRING."
        + _TAIL,
    ),
    "context": (
        "You are an intelligent chatbot designed for evaluating the contextual understanding of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if the generated response aligns with the overall context of the video content. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Evaluate whether the predicted answer aligns with the overall context of the video content. It should not provide information that is out of context or misaligned.\n"
        "- The predicted answer must capture the main themes and sentiments of the video.\n"
        "- Consider synonyms or paraphrases as valid matches.\n"
        "- Provide your evaluation of the contextual understanding of the prediction compared to the answer.",
        _QA_BLOCK
        + "Provide your evaluation only as a contextual understanding score where the contextual understanding score is an integer value between 0 and 5, with 5 indicating the highest level of contextual understanding. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is contextual understanding score in INTEGER, not STRING."
        + _TAIL,
    ),
    "temporal": (
        "You are an intelligent chatbot designed for evaluating the temporal understanding of generative outputs for video-based question-answer pairs. "
        "Your task is to compare the predicted answer with the correct answer and determine if they correctly reflect the temporal sequence of events in the video content. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the temporal consistency between the predicted answer and the correct answer. The predicted answer should correctly reflect the sequence of events or details as they are presented in the video content.\n"
        "- Consider synonyms or paraphrases as valid matches, but only if the temporal order is maintained.\n"
        "- Evaluate the temporal accuracy of the prediction compared to the answer.",
        _QA_BLOCK
        + "Provide your evaluation only as a temporal accuracy score where the temporal accuracy score is an integer value between 0 and 5, with 5 indicating the highest level of temporal consistency. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the temporal accuracy score in INTEGER, not STRING."
        + _TAIL,
    ),
    "consistency": (
        "You are an intelligent chatbot designed for evaluating the consistency of generative outputs for similar video-based question-answer pairs. "
        "You will be given two very similar questions, a common answer common to both the questions and predicted answers for the two questions ."
        "Your task is to compare the predicted answers for two very similar question, with a common correct answer and determine if they are consistent. Here's how you can accomplish the task:"
        "------"
        "##INSTRUCTIONS: "
        "- Focus on the consistency between the two predicted answers and the correct answer. Both predicted answers should correspond to the correct answer and to each other, and should not contain any contradictions or significant differences in the conveyed information.\n"
        "- Both predicted answers must be consistent with each other and the correct answer, in terms of the information they provide about the video content.\n"
        "- Consider synonyms or paraphrases as valid matches, but only if they maintain the consistency in the conveyed information.\n"
        "- Evaluate the consistency of the two predicted answers compared to the correct answer.",
        "Please evaluate the following video-based question-answer pair:\n\n"
        "Question 1: {question1}\n"
        "Question 2: {question2}\n"
        "Correct Answer: {answer}\n"
        "Predicted Answer to Question 1: {pred1}\n"
        "Predicted Answer to Question 2: {pred2}\n\n"
        "Provide your evaluation only as a consistency score where the consistency score is an integer value between 0 and 5, with 5 indicating the highest level of consistency. "
        "Please generate the response in the form of a Python dictionary string with keys 'score', where its value is the consistency score in INTEGER, not STRING."
        + _TAIL,
    ),
}


def judge_messages(dimension: str, **fields) -> list[dict]:
    system, user = JUDGE_PROMPTS[dimension]
    return [{"role": "system", "content": system}, {"role": "user", "content": user.format(**fields)}]


def add_arguments(p) -> None:
    p.add_argument("--generic", help="generic_qa.json (correctness, detail orientation, context)")
    p.add_argument("--temporal", help="temporal_qa.json")
    p.add_argument("--consistency", help="consistency_qa.json")
    p.add_argument("--video-dir", dest="video_dir", required=True, help="folder of the benchmark's videos")


def load_items(args) -> list[dict]:
    items = []
    for split in SPLIT_DIMENSIONS:
        path = getattr(args, split)
        if not path:
            continue
        for i, row in enumerate(_read_json(path)):
            name = str(row["video_name"])
            questions = [row["Q1"], row["Q2"]] if split == "consistency" else [row["Q"]]
            items.append({"id": f"{split}/{i}", "split": split, "video_name": name,
                          "video": find_video(args.video_dir, name, VIDEO_EXTENSIONS),
                          "questions": questions, "answer": row["A"]})
    if not any(getattr(args, split) for split in SPLIT_DIMENSIONS):
        raise ConfigError("give at least one of --generic, --temporal, --consistency")
    require_videos(items, "VCG")
    return items


# PLLaVA (magic-research/PLLaVA tasks/eval/vcgbench/pllava_eval_vcgbench.py, conv_eval_vcg): the
# Video-ChatGPT system message, the video in a user message of its own, 512 new tokens, stopping at
# "###" or "USER".
PROTOCOLS = ("official", "pllava")
PLLAVA_SYSTEM = ("You are Video-ChatGPT, a large vision-language assistant. You are able to understand the video content "
                 "that the user provides, and assist the user with a variety of tasks using natural language.Follow the "
                 "instructions carefully and explain your answers in detail based on the provided video.")
PLLAVA_STOP = ("###", "USER")
PLLAVA_SOURCE = "magic-research/PLLaVA: tasks/eval/vcgbench/pllava_eval_vcgbench.py, tasks/eval/eval_utils.py"


def protocol(args) -> dict:
    if getattr(args, "protocol", "official") == "pllava":
        return {"prompt_set": "PLLaVA's VCG evaluation + Video-ChatGPT VCG judges", "variant": "pllava",
                "model_prompt_source": PLLAVA_SOURCE, "source": SOURCE, "system": PLLAVA_SYSTEM,
                "template": "pllava_eval_alone", "model_prompt": "{question}", "max_new_tokens": 512,
                "stop": list(PLLAVA_STOP), "splits": [s for s in SPLIT_DIMENSIONS if getattr(args, s)],
                "score": "per dimension: mean of int(score) (Video-ChatGPT)",
                "judge_failure": FAILURE_POLICIES[args.judge_failure]}
    return {"prompt_set": "Video-ChatGPT VCG judges", "variant": "official", "source": SOURCE, "model_prompt": "{question}",
            "splits": [s for s in SPLIT_DIMENSIONS if getattr(args, s)],
            "score": "per dimension: mean of int(score) (Video-ChatGPT)",
            "judge_failure": FAILURE_POLICIES[args.judge_failure]}


def queries(item, args) -> list[Query]:
    if getattr(args, "protocol", "official") == "pllava":
        return [Query(item["video"], question, max_new_tokens=512, system=PLLAVA_SYSTEM, template="pllava_eval_alone",
                      stop=PLLAVA_STOP) for question in item["questions"]]
    return [Query(item["video"], question) for question in item["questions"]]


def score(item, answers, judge, args) -> dict:
    if item["split"] == "consistency":
        fields = {"question1": item["questions"][0], "question2": item["questions"][1], "answer": item["answer"],
                  "pred1": answers[0], "pred2": answers[1]}
    else:
        fields = {"question": item["questions"][0], "answer": item["answer"], "pred": answers[0]}
    dims = SPLIT_DIMENSIONS[item["split"]]
    verdicts = judge.map(lambda d: judge.ask(judge_messages(d, **fields), parse_score), list(dims))
    return {"split": item["split"], "video_name": item["video_name"], "questions": item["questions"],
            "answer": item["answer"],
            "scores": {d: (v.parsed["score"] if v.ok else None) for d, v in zip(dims, verdicts)},
            "judge": {d: v.to_dict() for d, v in zip(dims, verdicts)}}


def aggregate(records, args) -> dict:
    results = {}
    for dim in DIMENSIONS:
        values = [r["scores"][dim] for r in records if dim in r["scores"]]
        if not values:
            continue
        failures = sum(v is None for v in values)
        kept = [int(v) for v in values if v is not None] + ([0] * failures if args.judge_failure == "zero" else [])
        results[dim] = {"score": mean(kept), "items": len(kept), "judge_failures": failures}
    scored = [r["score"] for r in results.values() if r["score"] is not None]
    if len(scored) == len(DIMENSIONS):
        results["average"] = {"score": mean(scored), "items": None, "judge_failures": None}
    return results


def table(results) -> str:
    text = "| dimension | score | items | judge failures |\n|---|---|---|---|\n"
    for dim, r in results.items():
        sc = "-" if r["score"] is None else f"{r['score']:.2f}"
        text += f"| {dim} | {sc} | {'' if r['items'] is None else r['items']} | {'' if r['judge_failures'] is None else r['judge_failures']} |\n"
    return text
