"""What a benchmark module gives the runner, and the small pieces benchmarks share.

A benchmark is one module in `aurora/eval/tasks/` (its file name, with `-` for `_`, is its name on
the command line). It holds its data — published prompts byte for byte, file layouts — and small
functions:

    SUMMARY: str                                  one line for --help
    JUDGED: bool | "optional"                     needs --judge-url / --judge-model ("optional": a fallback)
    add_arguments(parser)                         its own flags (data paths, subsets)
    load_items(args) -> list[dict]                JSON-able items in a fixed order, each with a unique "id"
    protocol(args) -> dict                        prompts, sources and choices, stored with the results
    queries(item, args) -> list[Query]            what the model under test must answer for one item
    score(item, answers, judge, args) -> dict     per-item fields (judge calls go through `judge`)
    aggregate(records, args) -> dict              the summary numbers from all per-item records
    table(results) -> str                         a markdown table of those numbers

or, for a benchmark with its own loop (`synth`), just `add_arguments` and `run(args) -> int`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from aurora.errors import ConfigError

# How a judge verdict that never parsed (or never arrived) counts; recorded in every summary.
FAILURE_POLICIES = {
    "zero": "counted as a wrong answer: pred 'no', score 0 (lmms-eval's parse_score fallback)",
    "skip": "left out of every mean and count (as the published scripts that drop unparsable items)",
}


@dataclass(frozen=True)
class FrameSpec:
    """Frames fixed by a benchmark's protocol instead of the model's settings (MVBench).

    sampling "middle": the middle frame of `num_frames` equal segments of the clip, or of the
    window `bound` = (start, end) seconds; "longvideobench": LongVideoBench's rule over the
    annotated `duration` (`aurora.eval.frames.longvideobench_indices`); kind "frame": `video` is a
    folder of numbered JPEGs.
    """

    num_frames: int
    sampling: str = "middle"  # middle | longvideobench
    bound: tuple[float, float] | None = None
    kind: str = "video"  # video | gif | frame
    frame_fps: float | None = None  # frames per second of a gif or frame folder (when bounds apply)
    duration: float | None = None  # seconds, as annotated (sampling "longvideobench")


@dataclass(frozen=True)
class Query:
    """One thing the model under test must answer."""

    video: str  # a video file (or a folder of frames for FrameSpec.kind "frame")
    prompt: str
    prefix: str = ""  # the assistant's answer starts with this text (MVBench's "Best option:(")
    frames: FrameSpec | None = None  # None: frames as the model is configured (--num-frames)
    max_new_tokens: int | None = None  # the protocol's limit; --max-new-tokens overrides it
    system: str = ""  # a system message, through the template's system slot (PLLaVA's protocols)
    template: str | None = None  # the conversation template the protocol needs (None: the model's)
    stop: tuple[str, ...] = ()  # text that ends the answer (PLLaVA's VCG: "###", "USER")


def find_video(directory: str, name: str, extensions: tuple[str, ...]) -> str | None:
    """`directory/name` if it exists, else the first `directory/name + ext` that does."""
    path = os.path.join(directory, name)
    if os.path.isfile(path):
        return path
    for extension in extensions:
        if os.path.isfile(path + extension):
            return path + extension
    return None


def require_videos(items: list[dict], what: str) -> None:
    """One clear error for items whose video was not found (checked before any model work)."""
    missing = [item for item in items if not item.get("video")]
    if missing:
        raise ConfigError(f"{len(missing)} {what} videos not found (first: {missing[0].get('video_name')!r}); "
                          f"check --video-dir")


def check_policy(policy: str) -> str:
    if policy not in FAILURE_POLICIES:
        raise ConfigError(f"--judge-failure must be one of {', '.join(FAILURE_POLICIES)}, got {policy!r}")
    return policy


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def percent(numerator: float, denominator: float) -> float | None:
    return 100.0 * numerator / denominator if denominator else None
