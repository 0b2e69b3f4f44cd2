"""Regenerate the example media: `python examples/make_examples.py` (deterministic)."""

from pathlib import Path

import numpy as np

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


if __name__ == "__main__":
    frames = moving_circle()
    write_video(HERE / "red_circle_left.mp4", frames, fps=8)
    write_image(HERE / "red_circle.png", frames[0])
