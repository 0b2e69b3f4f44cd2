"""MVBench: 20 multiple-choice video tasks, the official protocol of OpenGVLab/Ask-Anything
video_chat2/mvbench.ipynb.

Data: the release's `json/` folder (one file per task: [{"video", "question", "candidates",
"answer", "start"?, "end"?}, ...]) as `--json-dir`, and its `video/` folder as `--video-root`
holding the published sub-folders (star/Charades_v1_480/, clevrer/video_validation/, ...).

Protocol: 16 frames at segment middles, within [start, end] seconds for the four tasks with bounds
(`aurora.eval.frames`); the question as "Question: ...\\nOptions:\\n(A) ...\\n(B) ..." after the
published instruction and followed by "\\nOnly give the best option."; the assistant's answer is
pre-filled with "Best option:(" and at most 100 new tokens are generated, greedily. The prediction
is "(" + the first line of the stripped output; it is right when its first space-separated word
(lower-cased, dots removed) is a substring of the answer's "(x)" or contains it — so an empty
output, "(", counts as right, a quirk of the published check kept as is. The score is the share of
right answers over all items (and per task).

The published notebook also puts the instruction in the conversation's system slot; Aurora's
templates take none by default, so it goes in the user turn only (the notebook's system_llm=True
part).
"""

from __future__ import annotations

import json
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.task import FrameSpec, Query, percent

SUMMARY = "MVBench: 20 multiple-choice tasks, 16 segment-middle frames, answer pre-filled with 'Best option:('"
JUDGED = False
SOURCE = "OpenGVLab/Ask-Anything: video_chat2/mvbench.ipynb"
NUM_FRAMES = 16
MAX_NEW_TOKENS = 100
SYSTEM = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement "
          "of objects, and the action and pose of persons. Based on your observations, select the best option that "
          "accurately addresses the question.\n")
QUESTION_PROMPT = "\nOnly give the best option."
ANSWER_PROMPT = "Best option:("
RETURN_PROMPT = "("
# PLLaVA (magic-research/PLLaVA tasks/eval/mvbench/pllava_eval_mvbench.py, conv_eval_mvbench): the
# instruction as the system message, "{question} \nOnly give the best option." (user_query joins
# the post prompt with a space), the video in a user message of its own, "Best option:(" pre-filled.
PROTOCOLS = ("official", "pllava")
PLLAVA_SOURCE = "magic-research/PLLaVA: tasks/eval/mvbench/pllava_eval_mvbench.py, tasks/eval/eval_utils.py"

# task -> (json file, folder under the video root, data type, has start/end bounds), in published order.
TASKS = {
    "Action Sequence": ("action_sequence.json", "star/Charades_v1_480/", "video", True),
    "Action Prediction": ("action_prediction.json", "star/Charades_v1_480/", "video", True),
    "Action Antonym": ("action_antonym.json", "ssv2_video/", "video", False),
    "Fine-grained Action": ("fine_grained_action.json", "Moments_in_Time_Raw/videos/", "video", False),
    "Unexpected Action": ("unexpected_action.json", "FunQA_test/test/", "video", False),
    "Object Existence": ("object_existence.json", "clevrer/video_validation/", "video", False),
    "Object Interaction": ("object_interaction.json", "star/Charades_v1_480/", "video", True),
    "Object Shuffle": ("object_shuffle.json", "perception/videos/", "video", False),
    "Moving Direction": ("moving_direction.json", "clevrer/video_validation/", "video", False),
    "Action Localization": ("action_localization.json", "sta/sta_video/", "video", True),
    "Scene Transition": ("scene_transition.json", "scene_qa/video/", "video", False),
    "Action Count": ("action_count.json", "perception/videos/", "video", False),
    "Moving Count": ("moving_count.json", "clevrer/video_validation/", "video", False),
    "Moving Attribute": ("moving_attribute.json", "clevrer/video_validation/", "video", False),
    "State Change": ("state_change.json", "perception/videos/", "video", False),
    "Fine-grained Pose": ("fine_grained_pose.json", "nturgbd/", "video", False),
    "Character Order": ("character_order.json", "perception/videos/", "video", False),
    "Egocentric Navigation": ("egocentric_navigation.json", "vlnqa/", "video", False),
    "Episodic Reasoning": ("episodic_reasoning.json", "tvqa/frames_fps3_hq/", "frame", True),
    "Counterfactual Inference": ("counterfactual_inference.json", "clevrer/video_validation/", "video", False),
}


def qa_template(data: dict) -> tuple[str, str]:
    """(question text, answer "(X) text"), as the published qa_template builds them."""
    question = f"Question: {data['question']}\nOptions:\n"
    answer_idx = -1
    for idx, candidate in enumerate(data["candidates"]):
        question += f"({chr(ord('A') + idx)}) {candidate}\n"
        if candidate == data["answer"]:
            answer_idx = idx
    return question.rstrip(), f"({chr(ord('A') + answer_idx)}) {data['answer']}"


def check_answer(pred: str, gt: str) -> bool:
    """The published check_ans: compare the first words, "(a)" vs "(a)", by substring."""
    pred_option = pred.lower().split(" ")[0]
    gt_option = gt.lower().split(" ")[0]
    return pred_option.replace(".", "") in gt_option or gt_option in pred_option


def prediction(output: str) -> str:
    """The published post-processing: the return prompt + the first line of the stripped output."""
    return RETURN_PROMPT + output.strip().split("\n")[0]


def add_arguments(p) -> None:
    p.add_argument("--json-dir", dest="json_dir", required=True, help="the release's json/ folder (one file per task)")
    p.add_argument("--video-root", dest="video_root", required=True, help="the release's video/ folder (star/, clevrer/, ...)")
    p.add_argument("--tasks", help="comma-separated task names or json file stems (default: all 20 that have a json file)")


def _selected(args) -> list[str]:
    if not args.tasks:
        return [t for t, (file, *_rest) in TASKS.items() if (Path(args.json_dir) / file).is_file()]
    chosen = []
    by_stem = {file[:-5]: t for t, (file, *_rest) in TASKS.items()}
    for name in (n.strip() for n in args.tasks.split(",") if n.strip()):
        task = name if name in TASKS else by_stem.get(name)
        if task is None:
            raise ConfigError(f"unknown MVBench task {name!r}: use e.g. action_sequence or 'Action Sequence'")
        chosen.append(task)
    return chosen


def load_items(args) -> list[dict]:
    tasks = _selected(args)
    if not tasks:
        raise ConfigError(f"no MVBench task files (action_sequence.json, ...) in {args.json_dir}")
    items = []
    for task in tasks:
        file, folder, kind, bounded = TASKS[task]
        path = Path(args.json_dir) / file
        if not path.is_file():
            raise ConfigError(f"{path} not found")
        for i, data in enumerate(json.loads(path.read_text())):
            question, answer = qa_template(data)
            video = str(Path(args.video_root) / folder / data["video"])
            if not Path(video).exists():
                raise ConfigError(f"MVBench video {video} not found; check --video-root")
            items.append({"id": f"{file[:-5]}/{i}", "task": task, "question": question, "answer": answer,
                          "video": video, "kind": "gif" if kind == "video" and video.lower().endswith(".gif") else kind,
                          "bound": [data["start"], data["end"]] if bounded else None})
    return items


def protocol(args) -> dict:
    if getattr(args, "protocol", "official") == "pllava":
        return {"prompt_set": "PLLaVA's MVBench evaluation", "variant": "pllava", "source": PLLAVA_SOURCE,
                "num_frames": args.num_frames or NUM_FRAMES, "sampling": "segment middles within start/end bounds",
                "system": SYSTEM, "template": "pllava_eval_alone", "question_prompt": " " + QUESTION_PROMPT,
                "answer_prompt": ANSWER_PROMPT, "return_prompt": RETURN_PROMPT, "max_new_tokens": MAX_NEW_TOKENS,
                "tasks": _selected(args), "check": "published check_ans", "average": "correct / total over all items"}
    return {"prompt_set": "MVBench official (video_chat2/mvbench.ipynb)", "variant": "official", "source": SOURCE,
            "num_frames": args.num_frames or NUM_FRAMES, "sampling": "segment middles within start/end bounds",
            "system_in_user_turn": SYSTEM, "question_prompt": QUESTION_PROMPT, "answer_prompt": ANSWER_PROMPT,
            "return_prompt": RETURN_PROMPT, "max_new_tokens": MAX_NEW_TOKENS, "tasks": _selected(args),
            "check": "published check_ans (first word substring compare; an empty answer counts as right)",
            "average": "correct / total over all items"}


def queries(item, args) -> list[Query]:
    bound = tuple(item["bound"]) if item["bound"] else None
    spec = FrameSpec(num_frames=args.num_frames or NUM_FRAMES, bound=bound, kind=item["kind"])
    if getattr(args, "protocol", "official") == "pllava":
        return [Query(item["video"], item["question"] + " " + QUESTION_PROMPT, prefix=ANSWER_PROMPT, frames=spec,
                      max_new_tokens=MAX_NEW_TOKENS, system=SYSTEM, template="pllava_eval_alone")]
    return [Query(item["video"], SYSTEM + item["question"] + QUESTION_PROMPT, prefix=ANSWER_PROMPT, frames=spec,
                  max_new_tokens=MAX_NEW_TOKENS)]


def score(item, answers, judge, args) -> dict:
    pred = prediction(answers[0])
    return {"task": item["task"], "answer": item["answer"], "pred": pred, "correct": check_answer(pred, item["answer"])}


def aggregate(records, args) -> dict:
    tasks = {}
    for record in records:
        counts = tasks.setdefault(record["task"], [0, 0])
        counts[0] += bool(record["correct"])
        counts[1] += 1
    correct, total = sum(c for c, _ in tasks.values()), sum(n for _, n in tasks.values())
    return {"average": percent(correct, total), "correct": correct, "total": total,
            "tasks": {t: {"accuracy": percent(c, n), "correct": c, "total": n} for t, (c, n) in tasks.items()}}


def table(results) -> str:
    text = "| task | accuracy | correct / total |\n|---|---|---|\n"
    for task, r in results["tasks"].items():
        text += f"| {task} | {r['accuracy']:.2f} | {r['correct']} / {r['total']} |\n"
    return text + f"| **average** | **{results['average']:.2f}** | {results['correct']} / {results['total']} |\n"
