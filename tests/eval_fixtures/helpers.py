"""Test helpers for `aurora eval`: fixture videos, a scripted model under test, CLI parsing."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from aurora.errors import AuroraError
from aurora.eval.cli import add_parser
from aurora.eval.predictors import Answer
from aurora.testing.media import make_frames, write_video

FIXTURES = Path(__file__).parent


def make_media(root: Path) -> Path:
    """Every fixture video under `root` (the layout the data files name); returns root."""
    videos = {
        "vdc/vid_a.mp4": 16, "vdc/vid_b.mp4": 16,
        "videoqa/clip_a.mp4": 16, "videoqa/clip_b.mp4": 16,
        "mvbench/star/Charades_v1_480/AS1.mp4": 48,  # 6 s at 8 fps, for the bounded windows
        "mvbench/perception/videos/OS1.mp4": 24,
        "videomme/vmA.mp4": 16, "videomme/vmB.mp4": 16,
        "captions/cap_a.mp4": 8, "captions/cap_b.mp4": 8, "captions/cap_c.mp4": 8,
    }
    for name, frames in videos.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(str(path), make_frames(frames, 64, 64), fps=8)
    folder = root / "mvbench/tvqa/frames_fps3_hq/ep1"  # 9 frames at 3 fps, numbered from 1
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(make_frames(10, 64, 64)[1:], start=1):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
    return root


class Scripted:
    """A model under test whose answer to each query is `script(query)`; counts what it answered
    and, with `fail_after`, raises once it has answered that many queries (a simulated kill)."""

    def __init__(self, script, fail_after: int | None = None, name: str = "scripted"):
        self.script, self.fail_after, self.name = script, fail_after, name
        self.answered = 0

    def describe(self) -> dict:
        return {"kind": "scripted", "name": self.name}

    def answer(self, queries):
        out = []
        for query in queries:
            if self.fail_after is not None and self.answered >= self.fail_after:
                raise RuntimeError("simulated kill")
            self.answered += 1
            out.append(Answer(self.script(query), 0.001, {}))
        return out


def parse(argv: list[str]) -> argparse.Namespace:
    """`aurora eval ...` arguments through our add_parser (as the main CLI will wire it)."""
    parser = argparse.ArgumentParser(prog="aurora")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """What `aurora.cli.main` does with the eval subcommand: run it, user mistakes -> 2."""
    args = parse(argv)
    try:
        return args.run(args)
    except AuroraError as e:
        print(f"aurora: error: {e}", file=__import__("sys").stderr)
        return 2


def video_name(query) -> str:
    return os.path.basename(query.video.rstrip("/"))


def frames_of(array: np.ndarray) -> list[int]:
    from aurora.testing.media import frame_index_of

    return [frame_index_of(frame) for frame in array]


def evaluate(argv: list[str], predictor):
    """Run `aurora eval ...` with `predictor` as the model under test; returns the summary."""
    from aurora.eval import registry, runner
    from aurora.eval.cli import build_judge, wants_judge

    args = parse(["eval", *argv, "--no-progress"])
    task = registry.load(args.benchmark)
    judge = build_judge(args) if wants_judge(task, args) else None
    try:
        return runner.evaluate(args.benchmark, task, args, predictor, judge, out=args.out, resume=args.resume,
                               limit=args.limit, batch_size=args.batch_size, progress=False,
                               shard_timeout=args.shard_timeout)
    finally:
        if judge is not None:
            judge.close()


def judge_flags(server, cache=None) -> list[str]:
    flags = ["--judge-url", server.url, "--judge-model", "rules", "--judge-timeout", "0.5",
             "--judge-backoff", "0.01", "--judge-retries", "3"]
    return flags + (["--judge-cache", str(cache)] if cache else [])


# ---- scripted answers for the fixture data (the golden numbers in the tests follow from these) ----

VDC_CAPTIONS = {("camera", "vid_a"): "a slow pan over a close-up scene", ("camera", "vid_b"): "handheld",
                ("short", "vid_a"): "a red ball rolls left", ("short", "vid_b"): "two dogs"}


def vdc_caption(query) -> str:
    from aurora.eval.tasks.vdc import PROMPTS

    kind = next(k for k in ("camera", "short") if query.prompt in PROMPTS[k])
    return VDC_CAPTIONS[kind, video_name(query)[:-4]]


VIDEOQA_PREDICTIONS = {"what color is the ball": "red", "what does the ball do #float": "it rolls to the left",
                       "how many dogs are there #malformed": "two", "what are the dogs doing #timeout": "sitting",
                       "where are they": "in a park"}
