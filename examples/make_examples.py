"""Regenerate the example media: `python examples/make_examples.py` (deterministic)."""

import json
from pathlib import Path

import numpy as np

from aurora.synth import SynthConfig
from aurora.synth.dataset import record, scene_for, write_mp4
from aurora.synth.render import render
from aurora.testing.media import write_image, write_video

HERE = Path(__file__).parent


def moving_circle(num_frames=32, size=128, radius=14):
    """A red circle moving right to left across a blue background, as (T, H, W, 3) uint8."""
    yy, xx = np.mgrid[:size, :size]
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        cx = size - radius - (size - 2 * radius) * t / (num_frames - 1)
        inside = (xx - cx) ** 2 + (yy - size / 2) ** 2 <= radius**2
        frames[t] = (30, 60, 200)
        frames[t][inside] = (220, 30, 30)
    return frames


# The default model's test split (recipes/default_model.yaml): a seed never used in training.
SYNTH_TEST = SynthConfig(num_clips=500, seed=1, splits=(0, 0, 1))
SYNTH_CLIPS = (2, 3, 6)  # one, two and three objects; the default model captions all three right (README)


def synth_clip(index: int) -> None:
    """examples/clip_NNNNN.mp4 + .json (its attributes and reference captions), as `aurora synth` makes them."""
    stem = HERE / f"clip_{index:05d}"
    write_mp4(stem.with_suffix(".mp4"), render(scene_for(index, SYNTH_TEST), SYNTH_TEST), SYNTH_TEST.fps)
    annotation = {k: v for k, v in record(index, SYNTH_TEST).items() if k in ("id", "attributes", "captions")}
    stem.with_suffix(".json").write_text(json.dumps(annotation, indent=1) + "\n")


if __name__ == "__main__":
    for index in SYNTH_CLIPS:
        synth_clip(index)
    frames = moving_circle()
    write_video(HERE / "red_circle_left.mp4", frames, fps=8)
    write_image(HERE / "red_circle.png", frames[0])
