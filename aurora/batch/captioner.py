"""The two steps every engine runs: decode one input (CPU, in a worker) and caption a batch of
decoded inputs (on the model's device). Neither raises for a bad input: it becomes an error row.

`decode` is a pure function of a reference and the frame settings, so it runs in a DataLoader
worker or a Ray task alike; `Captioner` owns a loaded model and halves its batch size when a batch
does not fit in memory (and keeps the smaller size).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aurora import media
from aurora.batch.inputs import is_url
from aurora.batch.rows import caption_row, error_row
from aurora.errors import AuroraError


@dataclass
class Decoded:
    """One input after decoding: its frames, or the one-line reason it has none."""

    path: str
    frames: media.Frames | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class FrameSettings:
    """How frames are sampled: the model preset's, unless the job overrides them."""

    num_frames: int
    fps: float | None
    sampling: str
    size: int | None = None  # decode straight to the tower's input size (bounded memory); None: full size


def job_settings(preset, model_name: str, prompt=None, num_frames=None, fps=None, token_kept_ratio=None,
                 max_new_tokens=None, adapter=None, lora_alpha=None, reduction=None) -> tuple[dict, FrameSettings]:
    """A job's options resolved against the model's preset: the rows' `settings` and the frame settings."""
    settings = {
        "model": model_name,
        "prompt": prompt or preset.template.default_prompt,
        "num_frames": num_frames or preset.media.num_frames,
        "fps": fps,
        "token_kept_ratio": preset.reducer.token_kept_ratio if token_kept_ratio is None else token_kept_ratio,
        "reduction": reduction or preset.reducer.method,
        "max_new_tokens": max_new_tokens or preset.generation.max_new_tokens,
        "adapter": None if adapter is None else str(adapter),
        "lora_alpha": lora_alpha,
    }
    from aurora.models.registry import get

    # composed families feed their tower preset.vision.image_size; native ones size frames themselves
    size = preset.vision.image_size if get(preset.family).kind == "composed" else None
    return settings, FrameSettings(settings["num_frames"], fps, preset.media.sampling, size)


def decode(reference: str, frames: FrameSettings) -> Decoded:
    """Fetch (URLs) and decode one input; any failure is recorded, never raised."""
    start = time.perf_counter()
    try:
        if is_url(reference):
            from aurora.media.sources import MediaFetcher, SourcePolicy

            # Local files are the user's own list here; private network addresses stay refused.
            with MediaFetcher(SourcePolicy(allowed_local_media_path="/")) as fetcher:
                loaded = _load(fetcher.fetch(reference), frames)
        else:
            loaded = _load(reference, frames)
        return Decoded(reference, loaded, None, time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - a bad input is a row, whatever broke
        return Decoded(reference, None, describe(e), time.perf_counter() - start)


def _load(path: str, frames: FrameSettings) -> media.Frames:
    return media.load_visual(path, num_frames=frames.num_frames, fps=frames.fps, sampling=frames.sampling,
                             size=frames.size)


def describe(error: BaseException) -> str:
    """One line: Aurora's own messages as they are, anything else with its type."""
    text = " ".join(str(error).split())
    return text if isinstance(error, AuroraError) else f"{type(error).__name__}: {text}"


class Captioner:
    """Captions batches of `Decoded` inputs with one loaded model, returning one row per input."""

    def __init__(self, model, settings: dict, batch_size: int):
        self.model = model
        self.settings = settings
        self.batch_size = batch_size  # shrinks when a batch does not fit

    def __call__(self, items: list[Decoded]) -> list[dict]:
        rows = [error_row(it.path, it.error, self.settings, it.seconds) for it in items if it.error is not None]
        ready = [it for it in items if it.error is None]
        while ready:
            chunk, ready = ready[: self.batch_size], ready[self.batch_size :]
            rows += self._caption(chunk)
        return rows

    def _caption(self, chunk: list[Decoded]) -> list[dict]:
        options = {name: self.settings[name] for name in ("prompt", "token_kept_ratio", "reduction", "max_new_tokens")}
        try:
            replies = self.model.caption_batch([it.frames for it in chunk], **options)
        except Exception as e:  # noqa: BLE001 - isolate the input that broke the batch
            if len(chunk) == 1:
                _release_memory()
                return [error_row(chunk[0].path, describe(e), self.settings, chunk[0].seconds)]
            if is_out_of_memory(e):
                _release_memory()
                self.batch_size = max(1, len(chunk) // 2)
            half = len(chunk) // 2
            return self._caption(chunk[:half]) + self._caption(chunk[half:])
        return [caption_row(it.path, reply, self.settings, it.seconds, len(chunk)) for it, reply in zip(chunk, replies)]


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _release_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
