"""The Ray engine: the same job as a Ray Data pipeline, from a laptop to a cluster.

    references -> map(decode_row)            CPU tasks: fetch + decode, one input each
               -> map_batches(CaptionBatch)  an actor pool of Aurora models (one per GPU, or N on CPUs)
               -> iter_batches on the driver, which writes the rows (one writer: resumable, no duplicates)

`decode_row` and `CaptionBatch` are also meant for a Ray user's own pipeline (a "path" column in,
caption rows out; see the README's "Batch captioning"):

    ds = ray.data.read_parquet("videos.parquet")          # a "path" column of paths or URLs
    ds = ds.map(decode_row, fn_kwargs={"num_frames": 8})
    ds = ds.map_batches(CaptionBatch, fn_constructor_kwargs={"model": "path/to/checkpoint"},
                        batch_size=16, compute=ray.data.ActorPoolStrategy(size=4), num_gpus=1)
    ds.write_parquet("captions/")
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from aurora import media
from aurora.batch.captioner import Captioner, Decoded, FrameSettings, decode, job_settings
from aurora.batch.rows import to_table


def decode_row(row: dict, num_frames: int = 8, fps: float | None = None, sampling: str = "uniform",
               size: int | None = None) -> dict:
    """Ray Data `map` function: {"path": ...} -> the row with its decoded frames, or its error."""
    item = decode(str(row["path"]), FrameSettings(num_frames, fps, sampling, size))
    frames = item.frames
    return {
        "path": item.path,
        "error": item.error or "",  # no None in columns: numpy batches would turn them into NaN
        "decode_s": item.seconds,
        "frames": frames.array if frames is not None else np.zeros((0, 1, 1, 3), np.uint8),  # (T, H, W, 3) uint8
        "frame_indices": list(frames.indices) if frames is not None else [],
        "frame_timestamps": list(frames.timestamps) if frames is not None else [],
        "total_frames": frames.total_frames if frames is not None else 0,
        "video_fps": _or_nan(frames.fps if frames is not None else None),
        "duration": _or_nan(frames.duration if frames is not None else None),
        "is_image": frames.is_image if frames is not None else False,
    }


class CaptionBatch:
    """Ray Data `map_batches` class: one loaded model per actor; a batch of decoded rows in, one
    caption row per input out (errors included), as a pyarrow table of `aurora.batch.rows.schema()`."""

    def __init__(self, model=None, prompt=None, num_frames=None, fps=None, token_kept_ratio=None, max_new_tokens=None,
                 batch_size: int = 16, reduction=None, **load_kwargs):
        import aurora

        loaded = aurora.load(model, **load_kwargs)
        settings, _ = job_settings(loaded.preset, loaded.name, prompt, num_frames, fps, token_kept_ratio, max_new_tokens,
                                   load_kwargs.get("adapter"), load_kwargs.get("lora_alpha"), reduction)
        loaded.check_reduction(settings["reduction"])
        self.captioner = Captioner(loaded, settings, batch_size)

    def __call__(self, batch: dict):
        items = []
        for i, path in enumerate(batch["path"]):
            error = str(batch["error"][i]) or None
            frames = None
            if error is None:
                frames = media.Frames(
                    array=np.asarray(batch["frames"][i]),
                    indices=[int(x) for x in batch["frame_indices"][i]],
                    timestamps=[float(x) for x in batch["frame_timestamps"][i]],
                    total_frames=int(batch["total_frames"][i]),
                    fps=_number(batch["video_fps"][i]),
                    duration=_number(batch["duration"][i]),
                    path=str(path),
                    is_image=bool(batch["is_image"][i]),
                )
            items.append(Decoded(str(path), frames, error, float(batch["decode_s"][i])))
        return to_table(self.captioner(items))


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _number(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def run_ray(references: list[str], frames: FrameSettings, model, options: dict, batch_size: int, workers: int,
            address: str | None, on_rows: Callable[[list[dict]], None]) -> None:
    """Caption `references` on a Ray cluster (`address`, or a local one started here), handing rows
    to `on_rows` as batches finish (in completion order)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job's own bar counts rows as they are written
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no per-run notices between the bar's updates
        device = options.get("device", "auto")
        gpus = 1 if device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        ds = ray.data.from_items([{"path": reference} for reference in references])
        # Decoding asks for half a CPU: two light single-threaded decodes per core, and requirements
        # unlike the actors', so Ray Data keeps it a separate stage of CPU tasks rather than fusing it
        # into the actors (where it would no longer overlap with captioning).
        ds = ds.map(decode_row, fn_kwargs={"num_frames": frames.num_frames, "fps": frames.fps, "sampling": frames.sampling,
                                          "size": frames.size},
                    num_cpus=0.5)
        ds = ds.map_batches(
            CaptionBatch,
            fn_constructor_kwargs={"model": model, "batch_size": batch_size, **options},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=gpus,
            num_cpus=0 if gpus else 1,
        )
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            on_rows(table.to_pylist())
    finally:
        if started:
            ray.shutdown()
