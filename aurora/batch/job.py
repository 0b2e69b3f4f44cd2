"""`caption_dataset`: caption every input of a data set, with a progress bar, writing rows as they
finish and resuming a killed job; the engine (local or Ray) only decides where the work runs."""

from __future__ import annotations

import os
import sys
import time

from aurora.batch.captioner import Captioner, job_settings
from aurora.batch.inputs import read_inputs, unique
from aurora.batch.results import open_results
from aurora.errors import ConfigError

ENGINES = ("local", "ray")
DEFAULT_MODEL_NAME = "aurora-default"  # the name aurora.load(None) gives the bundled model


def caption_dataset(
    inputs,
    out: str | os.PathLike | None = None,
    *,
    model=None,
    prompt: str | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
    token_kept_ratio: float | None = None,
    reduction: str | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    column: str | None = None,
    resume: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    adapter: str | None = None,
    lora_alpha: float | None = None,
    progress: bool = True,
) -> list[dict]:
    """Caption every input; returns one row per distinct input (see `aurora.batch.rows`).

    inputs: a directory, a list file or a CSV/JSONL/parquet table (`column`, default "path"; see
    `aurora.batch.inputs`), or a list of paths/URLs. out: a .jsonl or .parquet file written as rows
    finish (None: rows only returned); `resume` continues a killed job writing the same file. model:
    a checkpoint directory, hub id, None (the bundled model) or, for the local engine, a loaded
    model. workers: decoding processes (local; 0 = decode inline) or captioning actors (ray).
    address: the Ray cluster (e.g. "auto"; None starts a local one). reduction: the reducer method
    (`aurora.vision.reduce.METHODS`; None: the model's preset). device, dtype,
    trust_remote_code, adapter, lora_alpha: as `aurora.load` takes them.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if workers < (1 if engine == "ray" else 0):
        raise ConfigError(f"workers must be >= {1 if engine == 'ray' else 0} for the {engine} engine, got {workers}")
    if address is not None and engine != "ray":
        raise ConfigError("--address is for --engine ray")
    loaded = model if hasattr(model, "caption_batch") else None
    if loaded is not None and engine == "ray":
        raise ConfigError("the ray engine loads the model in its actors: pass a checkpoint path or None, not a loaded model")
    if isinstance(inputs, (str, os.PathLike)):
        references = read_inputs(inputs, column)
    else:
        references = unique([str(reference) for reference in inputs])

    preset, name = (loaded.preset, loaded.name) if loaded is not None else _preset_of(model)
    if loaded is not None and (adapter is not None or lora_alpha is not None):
        raise ConfigError("a loaded model already has its adapter: pass adapter/lora_alpha with a checkpoint path instead")
    settings, frames = job_settings(preset, name, prompt, num_frames, fps, token_kept_ratio, max_new_tokens,
                                    adapter, lora_alpha, reduction)
    _check_reduction(settings["reduction"])
    load_options = dict(device=device, dtype=dtype, trust_remote_code=trust_remote_code, adapter=adapter,
                        lora_alpha=lora_alpha)
    # files from before `reduction` was a setting were reduced with the preset's method
    writer = open_results(out, resume, settings, unrecorded={"reduction": preset.reducer.method}) if out is not None else None
    rows = list(writer.rows) if writer is not None else []
    done = {row["path"] for row in rows}
    todo = [reference for reference in references if reference not in done]
    if todo and engine == "local" and loaded is None:
        import aurora

        loaded = aurora.load(model, **load_options)
    if loaded is not None:
        loaded.check_reduction(settings["reduction"])
    bar = _Progress(total=len(references), done=len(references) - len(todo), enabled=progress)  # after loading

    def on_rows(new: list[dict]) -> None:
        if writer is not None:
            writer.write(new)
        rows.extend(new)
        bar.update(new)

    finished = False
    try:
        if todo and engine == "local":
            from aurora.batch.local import run_local

            run_local(todo, Captioner(loaded, settings, batch_size), frames, workers, on_rows)
        elif todo:
            from aurora.batch.ray_engine import run_ray

            options = dict(prompt=prompt, num_frames=num_frames, fps=fps, token_kept_ratio=token_kept_ratio,
                           reduction=reduction, max_new_tokens=max_new_tokens, **load_options)
            run_ray(todo, frames, None if model is None else str(model), options, batch_size, workers, address, on_rows)
        finished = True
    finally:
        bar.close()
        if writer is not None:
            writer.close(finished)
    return rows


def _check_reduction(method: str) -> None:
    """A reducer method Aurora knows, checked before any model loads or row is written (whether the
    model implements it is checked once it is loaded)."""
    from aurora.vision.reduce import METHODS

    if method not in METHODS:
        raise ConfigError(f"reduction must be one of {', '.join(METHODS)}, got {method!r}")


def _preset_of(model) -> tuple:
    """The preset (frame sampling, prompt and merging defaults) of a checkpoint, without loading its
    weights: its aurora_preset.json over its family's defaults, as the family's loader reads it."""
    from aurora.models import DEFAULT_MODEL, detect, resolve
    from aurora.preset import Preset

    path = DEFAULT_MODEL if model is None else resolve(model)
    family, _ = detect(path)
    return Preset.load(path, **family.default_preset().to_dict()), DEFAULT_MODEL_NAME if model is None else str(model)


class _Progress:
    """tqdm over inputs (videos/s and ETA from tqdm) with generated tokens/s and failures."""

    def __init__(self, total: int, done: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=done, unit="video", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.05)
        self.start = time.perf_counter()
        self.tokens = 0
        self.failed = 0

    def update(self, rows: list[dict]) -> None:
        self.tokens += sum(row["generated_tokens"] for row in rows)
        self.failed += sum(row["error"] is not None for row in rows)
        self.bar.set_postfix({"tokens/s": f"{self.tokens / (time.perf_counter() - self.start):.0f}", "failed": self.failed},
                             refresh=False)
        self.bar.update(len(rows))

    def close(self) -> None:
        self.bar.close()


__all__ = ["caption_dataset", "ENGINES"]
