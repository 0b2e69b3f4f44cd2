"""Frames fixed by a benchmark's protocol (MVBench): the middle frame of equal segments of a whole
clip, of a time window of it, or of a folder of numbered frames.

MVBench (OpenGVLab/Ask-Anything, video_chat2/mvbench.ipynb, `get_index`): with a bound (start, end)
in seconds, start_idx = max(first, round(start * fps)), end_idx = min(round(end * fps), last);
seg = (end_idx - start_idx) / n; frame i = int(start_idx + seg / 2 + round(seg * i)), numpy's
round-half-to-even. Videos use their average fps, GIFs 25 fps, frame folders (files 00001.jpg, ...,
numbered from 1) 3 fps. Without a bound this is `aurora.media.segment_middle_indices`.
"""

from __future__ import annotations

import os

import numpy as np

from aurora import media
from aurora.media.sampling import window_middle_indices
from aurora.errors import MediaError
from aurora.eval.task import FrameSpec

GIF_FPS = 25.0  # MVBench's read_gif default
FOLDER_FPS = 3.0  # MVBench's read_frame default (TVQA frames_fps3_hq)


# MVBench's get_index: the one segment-middle rule, in aurora.media (also PLLaVA's)
window_indices = window_middle_indices


def longvideobench_indices(max_frames: int, duration: float, fps: float, total: int) -> list[int]:
    """LongVideoBench's load_video (longvideobench/longvideobench_dataset.py): n = min(max_frames,
    int(duration)) frames, frame i = int(int(duration * fps) / n) * i, from the annotated duration.

    At least one frame for clips under a second, and indices past the file's last frame (an
    annotation longer than the file) are clamped to it, where the published decord call would fail.
    """
    n = max(1, min(max_frames, int(duration)))
    step = int(int(duration * fps) / n)
    return [min(step * i, total - 1) for i in range(n)]


def load_frames(path: str, spec: FrameSpec, size: int | None = None) -> media.Frames:
    """The frames `spec` asks for, as `aurora.media.Frames`; `size` (a model's input size) scales
    them down while decoding, as `aurora.media` does (None: as stored)."""
    if spec.sampling == "longvideobench":
        def chosen(total: int, video_fps: float | None) -> list[int]:
            if not video_fps:
                raise MediaError(f"{path!r} states no frame rate, so LongVideoBench's frames cannot be located")
            return longvideobench_indices(spec.num_frames, spec.duration, video_fps, total)

        return media.load_video(path, choose=chosen, size=size)
    if spec.kind == "frame":
        return _load_folder(path, spec, size)
    if spec.bound is None:
        return media.load_video(path, num_frames=spec.num_frames, sampling="middle", size=size)
    fps = spec.frame_fps or (GIF_FPS if spec.kind == "gif" else None)

    def choose(total: int, video_fps: float | None) -> list[int]:
        if not (fps or video_fps):
            raise MediaError(f"{path!r} states no frame rate, so its time window cannot be located")
        return window_indices(spec.num_frames, total - 1, fps or video_fps, spec.bound)

    return media.load_video(path, choose=choose, size=size)


def _load_folder(folder: str, spec: FrameSpec, size: int | None = None) -> media.Frames:
    if not os.path.isdir(folder):
        raise MediaError(f"cannot open {folder!r}: expected a folder of frames (00001.jpg, ...)")
    fps = spec.frame_fps or FOLDER_FPS
    total = len(os.listdir(folder))
    indices = window_indices(spec.num_frames, total, fps, spec.bound, first=1)  # numbered from 1, as published
    images = [media.load_image(os.path.join(folder, f"{i:05d}.jpg"), size=size).array[0] for i in indices]
    if len({image.shape for image in images}) > 1:
        raise MediaError(f"the frames in {folder!r} differ in size")
    return media.Frames(array=np.stack(images), indices=indices, timestamps=[i / fps for i in indices],
                        total_frames=total, fps=fps, duration=total / fps, path=folder, is_image=False)
