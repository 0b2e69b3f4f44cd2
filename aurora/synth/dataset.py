"""Writing a synthetic dataset: clips as mp4, records as LLaVA-style JSONL, resumable and parallel.

Clip `i` is drawn from `np.random.default_rng([seed, i])` alone, so clips can be made in any
order, by any number of workers, and a re-run only renders clips whose mp4 is missing (records
are cheap and always rebuilt, so every JSONL is rewritten whole, in index order). Splits are
contiguous index ranges (train first, then val, then test); clip `i` of split `s` is
`out/s/{i:05d}.mp4`, listed in `out/s.jsonl`. The settings are saved as `out/synth_config.json`,
and a folder holding clips made with other settings is refused rather than mixed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from aurora.errors import ConfigError
from aurora.synth.captions import CAPTION_PROMPTS, captions
from aurora.synth.config import SPLITS, SynthConfig, split_counts, split_of
from aurora.synth.render import render
from aurora.synth.scene import Scene, sample_scene

CONFIG_FILE = "synth_config.json"


def scene_for(index: int, config: SynthConfig) -> Scene:
    """The scene of clip `index`: a function of (config.seed, index) only."""
    return sample_scene(np.random.default_rng([config.seed, index]), config)


def video_path(index: int, config: SynthConfig) -> str:
    """Where clip `index` lives, relative to the output folder (and to its JSONL)."""
    return f"{split_of(index, config)}/{index:05d}.mp4"


def record(index: int, config: SynthConfig) -> dict:
    """The JSONL record of clip `index`: attributes, the five captions, a training conversation."""
    scene = scene_for(index, config)
    texts = captions(scene)
    split = split_of(index, config)
    task = task_for(index, config)
    return {
        "id": f"{split}_{index:05d}",
        "split": split,
        "video": video_path(index, config),
        "attributes": scene.to_dict(),
        "captions": texts,
        "conversations": [
            {"from": "human", "value": "<video>\n" + CAPTION_PROMPTS[task]},
            {"from": "gpt", "value": texts[task]},
        ],
    }


def task_for(index: int, config: SynthConfig) -> str:
    """The caption type clip `index`'s conversation asks for: drawn by weight from (seed, index)."""
    names = sorted(config.tasks)
    if len(names) == 1:
        return names[0]
    weights = np.array([config.tasks[n] for n in names], dtype=np.float64)
    return names[np.random.default_rng([config.seed, index, 11]).choice(len(names), p=weights / weights.sum())]


def generate(config: SynthConfig, workers: int = 1, progress: bool = True) -> dict:
    """Write the dataset `config` describes; returns clips per split plus `written` and `skipped`."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    out = Path(config.out)
    _claim(out, config)
    for split in SPLITS:
        (out / split).mkdir(exist_ok=True)
    todo = [i for i in range(config.num_clips) if not (out / video_path(i, config)).is_file()]
    with tqdm(total=config.num_clips, initial=config.num_clips - len(todo), unit="clip",
              desc="synth", disable=not progress) as bar:
        if workers > 1 and len(todo) > 1:
            # spawn: workers start clean (no inherited threads or locks from a torch parent).
            with multiprocessing.get_context("spawn").Pool(min(workers, len(todo))) as pool:
                chunk = max(1, len(todo) // (workers * 8))
                for _ in pool.imap_unordered(_write_clip, [(i, config) for i in todo], chunksize=chunk):
                    bar.update()
        else:
            for i in todo:
                _write_clip((i, config))
                bar.update()
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    for i in range(config.num_clips):
        rec = record(i, config)
        lines[rec["split"]].append(json.dumps(rec) + "\n")
    for split, split_lines in lines.items():
        _replace_text(out / f"{split}.jsonl", "".join(split_lines))
    return {**split_counts(config), "written": len(todo), "skipped": config.num_clips - len(todo)}


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames (H, W even) as H.264 yuv420p mp4, byte-identical per input.

    x264's lookahead (B-frame choice, macroblock tree, scenecut) made identical frames encode
    differently from run to run at these tiny sizes, so it is off, as are encoder threads
    (parallelism comes from clip workers); 16-frame clips lose nothing by it. The RGB -> YUV
    conversion is done here in numpy so no scaler sits between the array and the encoder.
    crf 18 keeps 12 px shapes and their colours intact at 64 px.
    """
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {
            "crf": "18", "preset": "medium", "x264-params": "bframes=0:rc-lookahead=0:scenecut=0",
        }
        for t, planes in enumerate(rgb_to_yuv420p(frames)):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = t, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the frames the encoder held back


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, 3H/2, W) uint8 yuv420p planes (Y, then U, then V rows).

    BT.601 limited range, as decoders assume for untagged standard-definition video; chroma is
    the mean over each 2x2 block.
    """
    rgb = frames.astype(np.float64)
    y = 16 + rgb @ np.array([65.481, 128.553, 24.966]) / 255  # (T, H, W)
    t, h, w, _ = rgb.shape
    block = rgb.reshape(t, h // 2, 2, w // 2, 2, 3).mean(axis=(2, 4))  # (T, H/2, W/2, 3)
    u = 128 + block @ np.array([-37.797, -74.203, 112.0]) / 255
    v = 128 + block @ np.array([112.0, -93.786, -18.214]) / 255
    chroma = np.stack([u, v], axis=1).reshape(t, h // 2, w)  # U rows then V rows, W/2 per row -> pairs
    planes = np.concatenate([y, chroma], axis=1)  # (T, 3H/2, W)
    return np.clip(np.rint(planes), 0, 255).astype(np.uint8)


def _write_clip(job: tuple[int, SynthConfig]) -> int:
    """Render and encode one clip; written under a temporary name, so a cut run leaves no half file."""
    index, config = job
    final = Path(config.out) / video_path(index, config)
    partial = final.with_name(final.name + ".part")
    write_mp4(partial, render(scene_for(index, config), config), config.fps)
    os.replace(partial, final)
    return index


def _claim(out: Path, config: SynthConfig) -> None:
    """Create `out`, or check that the clips already there were made with the same settings."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("out", "tasks")}  # what the clips depend on
    path = out / CONFIG_FILE
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            saved = None
        if saved != settings:
            raise ConfigError(
                f"{out} holds clips made with other settings ({path}); use another out folder or delete it"
            )
        return
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _replace_text(path, json.dumps(settings, indent=2) + "\n")


def _replace_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
