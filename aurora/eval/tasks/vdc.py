"""VDC, scored with VDCscore (AuroraCap): detailed captions of five kinds, graded through the
published question-answer pairs.

Data: the published QA files (rese1f/aurora, post_eval/{camera,short,background,main_object,
detailed}.jsonl: one `{"<video_id>": [{"question", "answer", "category"}, ...]}` per line) in
`--qa-dir`, and the videos as `<video_id>.mp4` (else .MP4, else .mkv, the published lookup) in
`--video-dir`.

Prompts: per caption type, one prompt per video drawn with `random.choice` from the published list
(rese1f/aurora post_eval/vdc/utils.py, the lmms-eval task that generates the captions; the copies
in post_eval/process_vdc_result.py say "8 equally spaced" and are not used to prompt). lmms-eval
draws from Python's global generator seeded 0 in its own call order; here each caption type has its
own `random.Random(--prompt-seed)` (default 0) drawing once per video in QA-file order, so a video's
prompt does not depend on sharding, limits or resumes.

Scoring (post_eval/process_vdc_result.py, same prompts in src/lmms-eval/.../vdc/utils.py): for each
question the judge first answers from the predicted caption alone (max 256 tokens), then compares
that answer with the reference one and replies {'pred': 'yes'|'no', 'score': 0-5} (max 256 tokens).
Per video: accuracy = share of pred == 'yes', score = mean of float(score); per caption type: the
mean over videos, reported as accuracy x 100 / score. Published scripts disagree on failures
(process_vdc_result.py drops a video on any unparsable verdict, and also every video whose score or
accuracy is 0; lmms-eval skips unparsable verdicts); here `--judge-failure` decides (default zero:
a failed verdict counts as 'no', 0) and, with `--aggregation all` (default), every video counts;
`--aggregation published` drops, as process_vdc_result.py does, every video with an unparsable
verdict and every video whose accuracy or score is 0 before averaging. The summary names the
aggregation (and the run's config the judge temperature).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from aurora.errors import ConfigError
from aurora.eval.judge import parse_pred_score
from aurora.eval.task import FAILURE_POLICIES, Query, find_video, mean, require_videos
from aurora.eval.tasks.videoqa import qa_judge_messages

SUMMARY = "VDC detailed captions scored with VDCscore (judge answers the published questions from the caption)"
JUDGED = True
SOURCE = "rese1f/aurora: post_eval/vdc/utils.py (prompts), post_eval/process_vdc_result.py (judge, scoring)"
CAPTION_TYPES = ("camera", "short", "background", "main_object", "detailed")
VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv")
JUDGE_MAX_TOKENS = 256
AGGREGATIONS = {
    "all": "mean over every video (failed verdicts as --judge-failure says)",
    "published": "process_vdc_result.py: videos with an unparsable verdict or accuracy or score 0 are dropped",
}

# Byte for byte as published, quirks included ("frames.Summary", "Photographic").
PROMPTS = {
    "detailed": [
        "Please imagine the video based on the sequence of frames, and provide a faithfully detailed description of this video in more than three sentences.",
        "You are given a sequence of equally spaced video frames. Based on these frames, imagine the full video and provide a detailed description of what is happening in more than three sentences.",
        "The following set contains equally spaced video frames. Imagine the video from which these frames were taken and describe it in detail in at least three sentences.",
        "Below are equally spaced frames from a video. Use these frames to visualize the entire video and provide a detailed description in more than three sentences.",
        "A sequence of equally spaced video frames is presented. Please imagine the full video and write a faithfully detailed description of the events in more than three sentences.",
        "The images provided include equally spaced frames from a video. Based on these frames, imagine the video and describe it comprehensively in at least three sentences.",
        "You are given equally spaced frames from a video. Use these frames to envision the entire video and provide a detailed description of the events in more than three sentences.",
        "The sequence includes equally spaced frames from a video. Imagine the full video based on these frames and provide a detailed description in more than three sentences.",
        "The provided images contain equally spaced frames from a video. Visualize the video from these frames and describe it in detail in more than three sentences.",
        "Here are equally spaced frames from a video. Based on these frames, imagine the video and provide a detailed, faithful description of it in more than three sentences.",
        "The set of images includes equally spaced video frames. Please imagine the video these frames come from and describe it comprehensively in at least three sentences.",
        "Describe the video based on these frames in a few sentences.",
        "What is happening in the video shown in these frames?",
        "Explain the video using these frames.",
        "Imagine the video from these frames and describe it in detail in a few sentences.",
        "Based on these frames, provide a narrative of the video in more than three sentences.",
        "Describe the events in the video shown by these frames in at least three sentences.",
        "Visualize the video from these frames and explain what is happening in more than three sentences.",
        "Describe the sequence of events in the video depicted by these frames in a detailed manner.",
        "Given these equally spaced frames, imagine the entire video and provide a detailed description of the events, including the setting, characters, and actions, in more than three sentences.",
        "Visualize the video based on these frames and write a comprehensive description of what happens, describing the beginning, middle, and end in at least three sentences.",
        "Using these frames as a reference, imagine the full video and provide a thorough description of the plot, including key details and actions, in more than three sentences.",
        "Based on the sequence of these frames, describe the entire video in detail, mentioning important aspects such as the context, movements, and transitions in more than three sentences.",
        "Imagine the video that corresponds to these frames and provide an elaborate description, covering the storyline, visual elements, and any notable features in at least three sentences.",
    ],
    "background": [
        "The images are given containing equally spaced video frames.Summary of the background. This should also include the objects, location, weather, and time.",
        "Describe the background, including objects, location, weather, and time.",
        "Summarize the background setting of the video based on these frames.",
        "What is the environment like in these frames?",
        "Describe the location and weather in these frames.",
        "What background objects and settings are visible in these frames?",
        "Summarize the background of the video, including details about the location, objects, weather, and time.",
        "Describe the environment shown in these frames, covering objects, location, weather, and time.",
        "Provide a detailed background description based on these frames, mentioning objects, location, weather, and time.",
        "Explain the setting of the video, focusing on the background elements like objects, location, weather, and time.",
        "Describe the overall environment in these frames, including details about objects, location, weather, and time.",
        "Given these equally spaced frames, provide a comprehensive background description, covering the objects, location, weather, and time.",
        "Imagine the environment from these frames and write a detailed description of the background, including objects, location, weather, and time.",
        "Based on these frames, describe the setting in detail, mentioning the objects present, the specific location, the weather conditions, and the time of day.",
        "Provide an elaborate background description based on these frames, covering all aspects of the environment such as objects, location, weather, and time.",
        "Using these frames as a reference, give a thorough description of the background, including details about the objects, location, weather, and time.",
    ],
    "short": [
        "Write a one-sentence summary of the video.",
        "Summarize the video in one concise sentence.",
        "Provide a brief description of the video in one sentence.",
        "Describe the main action in the video in one sentence.",
        "What is the video about? Summarize it in one sentence.",
        "In one sentence, summarize the key visual elements of the video.",
        "Provide a one-sentence summary that captures the main subject and action in the video.",
        "Write a concise one-sentence description that encapsulates the essence of the video.",
        "Describe the main theme or action of the video in a single sentence.",
        "What is happening in the video? Provide a one-sentence summary.",
        "Given these frames, write a brief one-sentence summary that captures the essence of the video's visual and artistic style.",
        "Summarize the key visual and thematic elements of the video in one concise sentence.",
        "Provide a one-sentence description that highlights the main subject and action depicted in the video.",
        "In one sentence, describe the primary visual and artistic elements of the video.",
        "Write a concise one-sentence summary that encapsulates the main action and visual style of the video.",
        "Briefly one-sentence Summary of the visual, Photographic and artistic style.",
    ],
    "main_object": [
        "Description of the main subject actions or status sequence. This suggests including the main subjects (person, object, animal, or none) and their attributes, their action, their position, and movements during the video frames.",
        "Describe the main subject's actions and movements.",
        "What is the main object doing in these frames?",
        "Summarize the primary subject's attributes and actions.",
        "Describe the main subject's position and movements.",
        "What actions does the main object take in these frames?",
        "Describe the main subject, including their attributes and movements throughout the video.",
        "Provide a detailed description of the main object's actions and positions in these frames.",
        "Summarize the main subject's actions, attributes, and movements during the video.",
        "Describe the primary subject's movements and actions in detail.",
        "What are the main object's attributes and how do they move throughout the video?",
        "Given these equally spaced frames, provide a comprehensive description of the main subject, including their attributes, actions, positions, and movements.",
        "Describe the primary object or subject in the video, detailing their attributes, actions, positions, and movements in these frames.",
        "Based on these frames, provide a detailed description of the main subject, including their attributes, actions, positions, and how they navigate through the video.",
        "Using these frames, describe the main subject's attributes, actions, and movements, detailing their positions and how they interact with the environment.",
        "Provide an elaborate description of the main object in the video, covering their attributes, actions, positions, and movements as shown in these frames.",
    ],
    "camera": [
        "Summary of the view shot, camera movement and changes in shooting angles in the sequence of video frames.",
        "Describe the camera movements in these frames.",
        "What are the camera angles and movements throughout the video?",
        "Summarize the camera actions and perspectives.",
        "Describe any camera zooms, pans, or angle changes.",
        "What camera movements are present in these frames?",
        "Describe the camera's movements, including pans, zooms, and angle changes in these frames.",
        "Summarize the camera actions and changes in shooting angles during the video.",
        "Provide a detailed description of the camera's movements and perspectives.",
        "Describe the camera's actions and how it follows the main subject.",
        "What are the camera movements and angle shifts in these frames?",
        "Given these equally spaced frames, provide a comprehensive description of the camera's movements, including any pans, zooms, and changes in shooting angles.",
        "Describe the camera's movements and angles in detail, explaining how it follows the main subject and changes perspectives.",
        "Based on these frames, provide a detailed description of the camera's actions, including any pans, zooms, angle shifts, and how it captures the scene.",
        "Using these frames, describe the camera's movements, including its tracking of the main subject, changes in angles, and any zooms or pans.",
        "Provide an elaborate description of the camera movements, covering pans, zooms, and changes in shooting angles as shown in these frames.",
    ],
}

ANSWER_SYSTEM = (
    "You are an intelligent chatbot designed for providing accurate answers to questions related to the content based on a detailed description of a video or image."
    "Here's how you can accomplish the task:"
    "------"
    "##INSTRUCTIONS: "
    "- Read the detailed description carefully.\n"
    "- Answer the question only based on the detailed description.\n"
    "- The answer should be a short sentence or phrase.\n"
)
ANSWER_USER = (
    "Please provide accurate answers to questions related to the content based on a detailed description of a video or image:\n\n"
    "detailed description: {caption}, question: {question}"
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide short but accurate answer."
)


def answer_messages(caption: str, question: str) -> list[dict]:
    """Step 1: the judge answers a question from the predicted caption alone."""
    return [{"role": "system", "content": ANSWER_SYSTEM},
            {"role": "user", "content": ANSWER_USER.format(caption=caption, question=question)}]


def add_arguments(p) -> None:
    p.add_argument("--qa-dir", dest="qa_dir", required=True, help="folder with the published camera/short/background/main_object/detailed.jsonl")
    p.add_argument("--video-dir", dest="video_dir", required=True, help="folder of the VDC videos (<video_id>.mp4)")
    p.add_argument("--caption-types", dest="caption_types", default=",".join(CAPTION_TYPES),
                   help=f"comma-separated subset of {','.join(CAPTION_TYPES)} (default: all)")
    p.add_argument("--prompt-seed", dest="prompt_seed", type=int, default=0, help="seed of the per-video prompt draw (default 0, as lmms-eval)")
    p.add_argument("--aggregation", choices=tuple(AGGREGATIONS), default="all",
                   help="all: every video counts (default); published: drop videos with an unparsable verdict "
                        "or a zero accuracy or score, as process_vdc_result.py")


def caption_types(args) -> list[str]:
    kinds = [k.strip() for k in args.caption_types.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in CAPTION_TYPES]
    if unknown or not kinds:
        raise ConfigError(f"--caption-types takes {', '.join(CAPTION_TYPES)}; got {args.caption_types!r}")
    return kinds


def read_qa(path: Path) -> list[tuple[str, list[dict]]]:
    """(video_id, qa list) in file order from one published QA JSONL."""
    if not path.is_file():
        raise ConfigError(f"{path} not found: --qa-dir must hold the published VDC QA files")
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            pairs.extend(json.loads(line).items())
        except (json.JSONDecodeError, AttributeError):
            raise ConfigError(f"{path}:{n} is not a JSON object of video_id -> QA list") from None
    return pairs


def load_items(args) -> list[dict]:
    items = []
    for kind in caption_types(args):
        draw = random.Random(args.prompt_seed)  # one generator per caption type, one draw per video
        for video_id, qa in read_qa(Path(args.qa_dir) / f"{kind}.jsonl"):
            items.append({"id": f"{kind}/{video_id}", "caption_type": kind, "video_id": video_id,
                          "video_name": video_id, "video": find_video(args.video_dir, video_id, VIDEO_EXTENSIONS),
                          "prompt": draw.choice(PROMPTS[kind]),
                          "qa": [{"question": q["question"], "answer": q["answer"]} for q in qa]})
    require_videos(items, "VDC")
    return items


def protocol(args) -> dict:
    return {"prompt_set": "VDC caption prompts (rese1f/aurora post_eval/vdc/utils.py), one random.choice per video",
            "source": SOURCE, "caption_types": caption_types(args), "prompt_seed": args.prompt_seed,
            "prompt_draw": "random.Random(seed).choice per video in QA-file order, one generator per caption type",
            "judge_max_tokens": JUDGE_MAX_TOKENS,
            "per_video": "accuracy = share of pred == 'yes'; score = mean of float(score)",
            "per_type": "mean over videos (accuracy x 100)",
            "judge_failure": FAILURE_POLICIES[args.judge_failure],
            "aggregation": _aggregation(args), "aggregation_rule": AGGREGATIONS[_aggregation(args)]}


def _aggregation(args) -> str:
    return getattr(args, "aggregation", "all")


def kept_videos(videos: list[dict], aggregation: str) -> list[dict]:
    """The videos a caption type's mean is over."""
    if aggregation == "published":
        return [r for r in videos if not r["judge_failures"] and r["accuracy"] and r["score"]]
    return videos


def queries(item, args) -> list[Query]:
    return [Query(item["video"], item["prompt"])]


def score(item, answers, judge, args) -> dict:
    caption = answers[0]

    def grade(qa: dict) -> dict:
        step1 = judge.ask(answer_messages(caption, qa["question"]), max_tokens=JUDGE_MAX_TOKENS)
        if not step1.ok:
            return {**qa, "pred_answer": None, "judge": [step1.to_dict()], "pred": None, "score": None}
        step2 = judge.ask(qa_judge_messages(qa["question"], qa["answer"], step1.parsed), parse_pred_score,
                          max_tokens=JUDGE_MAX_TOKENS)
        parsed = step2.parsed or {}
        return {**qa, "pred_answer": step1.parsed, "judge": [step1.to_dict(), step2.to_dict()],
                "pred": parsed.get("pred"), "score": parsed.get("score")}

    graded = judge.map(grade, item["qa"])
    return {"caption_type": item["caption_type"], "video_id": item["video_id"], "prompt": item["prompt"],
            "caption": caption, "qa": graded, **video_score(graded, args.judge_failure)}


def video_score(graded: list[dict], policy: str) -> dict:
    """One video's accuracy (0-1) and mean score over its questions."""
    failures = sum(g["pred"] is None for g in graded)
    kept = [g for g in graded if g["pred"] is not None or policy == "zero"]
    if not kept:
        return {"accuracy": None, "score": None, "judge_failures": failures}
    accuracy = sum(g["pred"] == "yes" for g in kept) / len(kept)
    return {"accuracy": accuracy, "score": sum(g["score"] or 0.0 for g in kept) / len(kept),
            "judge_failures": failures}


def aggregate(records, args) -> dict:
    results = {}
    for kind in caption_types(args):
        videos = [r for r in records if r["caption_type"] == kind and r["accuracy"] is not None]
        if not any(r["caption_type"] == kind for r in records):
            continue
        total = len(videos)
        videos = kept_videos(videos, _aggregation(args))
        accuracy = mean([r["accuracy"] for r in videos])
        results[kind] = {"accuracy": None if accuracy is None else 100 * accuracy,
                         "score": mean([r["score"] for r in videos]), "videos": len(videos),
                         "dropped": total - len(videos), "aggregation": _aggregation(args),
                         "judge_failures": sum(r["judge_failures"] for r in records if r["caption_type"] == kind)}
    return results


def table(results) -> str:
    text = "| caption type | accuracy | score | videos | dropped | judge failures |\n|---|---|---|---|---|---|\n"
    for kind, r in results.items():
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        sc = "-" if r["score"] is None else f"{r['score']:.2f}"
        text += f"| {kind} | {acc} | {sc} | {r['videos']} | {r.get('dropped', 0)} | {r['judge_failures']} |\n"
    aggregations = sorted({r.get("aggregation", "all") for r in results.values()})
    return text + f"\naggregation: {', '.join(aggregations)} ({'; '.join(AGGREGATIONS[a] for a in aggregations)})\n"
