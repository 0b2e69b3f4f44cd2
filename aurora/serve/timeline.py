"""A picture of clip sampling (Apollo): the video's length as a bar, each clip the model read as a
coloured span at its time range, a tick every tenth of the video, and under the bar the first frame
of each clip (as many as fit) placed at its clip's start."""

from __future__ import annotations

import numpy as np
from PIL import Image

from aurora.serve.token_view import group_colours

WIDTH, BAR, THUMB = 960, 28, 72  # pixels: picture width, bar height, thumbnail height


def clip_timeline(frames, width: int = WIDTH) -> np.ndarray:
    """`media.Frames` read as clips -> (H, width, 3) uint8."""
    duration = frames.total_frames / frames.fps if frames.fps else max(end for _, end in frames.clips)
    duration = max(duration, max(end for _, end in frames.clips), 1e-6)
    picture = np.full((BAR + 8 + THUMB, width, 3), 255, dtype=np.uint8)
    picture[4:4 + BAR] = 225  # the whole video
    for k in range(11):  # ticks at tenths
        x = min(width - 1, round(k / 10 * (width - 1)))
        picture[:4, x] = picture[4 + BAR:8 + BAR, x] = 90
    colours = (group_colours(len(frames.clips)) * 255).astype(np.uint8)
    per_clip = len(frames.array) // len(frames.clips)
    next_free = 0  # thumbnails never overlap: a clip whose place is taken shows none
    for k, (start, end) in enumerate(frames.clips):
        left = round(start / duration * (width - 1))
        right = max(left, round(end / duration * (width - 1))) + 1  # the end's pixel included
        picture[4:4 + BAR, left:right] = colours[k]
        frame = frames.array[k * per_clip]
        thumb_w = max(1, round(frame.shape[1] * THUMB / frame.shape[0]))
        if left >= next_free and left + thumb_w <= width:
            thumb = np.asarray(Image.fromarray(frame).resize((thumb_w, THUMB), Image.BILINEAR))
            picture[8 + BAR:, left:left + thumb_w] = thumb
            picture[8 + BAR:, left] = colours[k]  # the thumbnail's clip colour on its left edge
            next_free = left + thumb_w + 2
    return picture
