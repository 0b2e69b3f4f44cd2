"""Clip sampling (Apollo): a video read as clips of `clip_duration` seconds, `frames_per_clip`
frames each, as many clips as the language model's context allows.

The rule is Apollo's (`ApolloMMLoader` / `calculate_sample_indices` in Apollo-LMMs/Apollo), kept
with its quirks because the published models were trained on it:

- the video's length is `total_frames / fps` (the container's frame count over its average rate);
- the share of the video sampled is min(1, model_max_length x clip_sampling_ratio /
  (duration x tokens_per_clip / clip_duration)), so a long video keeps its clip count within the
  context; num_clips = ceil(duration / clip_duration x that share);
- frames inside a clip are `step = int(fps x clip_duration / frames_per_clip)` apart (at least 1),
  each clip centred in one of num_clips equal partitions of the frame range (a partition shorter
  than a clip: clips start `clip_step` frames apart from 0 instead);
- a clip's time range is (first frame, last frame) / fps — frame numbers over the average rate,
  also for variable-frame-rate video (what the published models saw).

Pure functions over (duration, fps, frame count); `aurora.media.load_clips` applies them to a file.
"""

from __future__ import annotations

import math

import numpy as np

from aurora.errors import ConfigError


def clip_share(duration: float, clip_duration: float, tokens_per_clip: int, model_max_length: int,
               clip_sampling_ratio: float) -> float:
    """The share of the video's clips that fits the context (Apollo's effective sampling ratio)."""
    if duration <= 0:
        raise ConfigError(f"a video of {duration} s has no clips to sample")
    return min(1.0, model_max_length * clip_sampling_ratio / (duration * tokens_per_clip / clip_duration))


def clip_indices(clip_duration: float, frames_per_clip: int, total_frames: int, fps: float, duration: float,
                 share: float = 1.0) -> tuple[list[list[int]], list[tuple[float, float]]]:
    """Frame indices of every clip and its (start, end) seconds, by Apollo's rule (see the module)."""
    if total_frames < 1 or not fps or fps <= 0:
        raise ConfigError(f"cannot sample clips from {total_frames} frames at {fps} fps")
    if clip_duration <= 0 or frames_per_clip < 1:
        raise ConfigError(f"clip_duration must be > 0 and frames_per_clip >= 1, got {clip_duration}, {frames_per_clip}")
    num_clips = math.ceil(duration / clip_duration * share)
    if num_clips < 1:
        raise ConfigError(f"a video of {duration} s has no clips to sample")
    sample_fps = frames_per_clip / clip_duration
    partition = total_frames // num_clips  # frames per equal partition
    spacing = fps / sample_fps  # frames between two samples, before rounding
    clips = []
    if spacing > 0.5:
        step = max(1, int(spacing))
        clip_len = int(frames_per_clip * step)  # frames a clip spans
        sample_len = min(clip_len, total_frames)
        clip_step = (total_frames - clip_len) // max(1, num_clips - 1) if total_frames > clip_len else 0
        for k in range(num_clips):
            if partition > clip_len:  # centred in partition k
                start = (partition - clip_len) // 2
                picks = np.clip(np.arange(start, start + clip_len, step), 0, partition - 1) + k * partition
            else:  # the video is short for its clip count: clips from frame 0, clip_step apart
                picks = np.arange(0, sample_len, step)
                if len(picks) < frames_per_clip:  # padded with an index past the end, then clamped
                    picks = np.concatenate([picks, np.full(frames_per_clip - len(picks), sample_len)])
                picks = np.clip(picks, 0, sample_len - 1) + k * clip_step
            clips.append(picks.astype(np.int64))
    else:  # the video's rate is below half the sample rate: frames repeat (Apollo: "should not happen")
        repeat = int(np.ceil(1 / spacing))
        clip_len = int(frames_per_clip * spacing)
        picks = np.repeat(np.arange(clip_len), repeat)
        clip_len = min(clip_len, len(picks))
        clip_step = (total_frames - clip_len) // max(1, num_clips - 1) if total_frames > clip_len else 0
        sample_len = min(clip_len, total_frames)
        if len(picks) < frames_per_clip:
            picks = np.concatenate([picks, np.full(frames_per_clip - len(picks), sample_len)])
        # Apollo clamps to sample_len - 1 (-1 when no frame fits); max(0, ...) keeps indices valid
        picks = np.clip(picks, 0, max(0, sample_len - 1)).astype(np.int64)
        clips = [picks + k * clip_step for k in range(num_clips)]
    ranges = [(float(c[0] / fps), float(c[-1] / fps)) for c in clips]
    return [c.tolist() for c in clips], ranges


def sample_clips(total_frames: int, fps: float, clip_duration: float, frames_per_clip: int, tokens_per_clip: int,
                 model_max_length: int, clip_sampling_ratio: float) -> tuple[list[list[int]], list[tuple[float, float]]]:
    """Apollo's whole rule for one video: its duration from the frame count, the share that fits the
    context, then `clip_indices`."""
    if not fps or fps <= 0:
        raise ConfigError("cannot sample clips: the video states no frame rate")
    duration = total_frames / fps
    share = clip_share(duration, clip_duration, tokens_per_clip, model_max_length, clip_sampling_ratio)
    return clip_indices(clip_duration, frames_per_clip, total_frames, fps, duration, share)
