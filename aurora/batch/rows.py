"""The result row of a batch job: one per input, the same whatever the engine or output format.

    path                     the input reference, as given (the row's key)
    caption                  the text, or None when the input failed
    error                    None, or one line saying why this input has no caption
    model                    the model's name
    frame_indices            frames used (presentation order, 0-based)
    frame_timestamps         their times in seconds
    visual_tokens_per_frame  after token merging
    prompt_tokens, generated_tokens, finish_reason
    timings                  seconds: decode, preprocess, encode (this input's own), prefill and
                             generate (this input's share of its batch: batch time / batch size)
    settings                 what the captions were asked with: model, prompt, num_frames, fps,
                             token_kept_ratio, reduction, max_new_tokens (resolved from the model's preset),
                             adapter and lora_alpha (None without an adapter)
"""

from __future__ import annotations

from functools import lru_cache

from aurora.errors import ConfigError

STAGES = ("decode", "preprocess", "encode", "prefill", "generate")
SETTINGS = ("model", "prompt", "num_frames", "fps", "token_kept_ratio", "reduction", "max_new_tokens", "adapter",
            "lora_alpha")
COLUMNS = ("path", "caption", "error", "model", "frame_indices", "frame_timestamps", "visual_tokens_per_frame",
           "prompt_tokens", "generated_tokens", "finish_reason", "timings", "settings")


@lru_cache(maxsize=None)
def schema():
    """The rows' arrow schema (parquet output, Ray blocks); needs pyarrow (`pip install aurora-vlm[parquet]`)."""
    pa = import_pyarrow()
    settings = pa.struct([("model", pa.string()), ("prompt", pa.string()), ("num_frames", pa.int64()),
                          ("fps", pa.float64()), ("token_kept_ratio", pa.float64()), ("reduction", pa.string()),
                          ("max_new_tokens", pa.int64()),
                          ("adapter", pa.string()), ("lora_alpha", pa.float64())])
    return pa.schema([
        ("path", pa.string()),
        ("caption", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
        ("frame_indices", pa.list_(pa.int64())),
        ("frame_timestamps", pa.list_(pa.float64())),
        ("visual_tokens_per_frame", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("generated_tokens", pa.int64()),
        ("finish_reason", pa.string()),
        ("timings", pa.struct([(stage, pa.float64()) for stage in STAGES])),
        ("settings", settings),
    ])


def import_pyarrow():
    try:
        import pyarrow
    except ImportError:
        raise ConfigError("parquet needs pyarrow: pip install 'aurora-vlm[parquet]' (or write .jsonl)") from None
    return pyarrow



def caption_row(path: str, reply, settings: dict, decode_s: float, batch_size: int) -> dict:
    """A captioned input from its `Reply` (one visual) and the seconds its decoding took."""
    timings = {stage: float(reply.timings.get(stage, 0.0)) for stage in STAGES}
    timings["decode"] = decode_s  # the reply saw decoded frames; decoding ran in a worker
    for stage in ("prefill", "generate"):  # the reply holds the whole batch's time
        timings[stage] /= batch_size
    return {
        "path": path,
        "caption": reply.text,
        "error": None,
        "model": reply.model,
        "frame_indices": list(reply.frame_indices[0]) if reply.frame_indices else [],
        "frame_timestamps": list(reply.frame_timestamps[0]) if reply.frame_timestamps else [],
        "visual_tokens_per_frame": reply.visual_tokens_per_frame[0] if reply.visual_tokens_per_frame else 0,
        "prompt_tokens": reply.prompt_tokens,
        "generated_tokens": reply.generated_tokens,
        "finish_reason": reply.finish_reason,
        "timings": {stage: round(seconds, 6) for stage, seconds in timings.items()},
        "settings": dict(settings),
    }


def error_row(path: str, error: str, settings: dict, decode_s: float = 0.0) -> dict:
    """An input that has no caption, with the one-line reason."""
    return {
        "path": path,
        "caption": None,
        "error": error,
        "model": settings.get("model"),
        "frame_indices": [],
        "frame_timestamps": [],
        "visual_tokens_per_frame": 0,
        "prompt_tokens": 0,
        "generated_tokens": 0,
        "finish_reason": "error",
        "timings": {stage: (round(decode_s, 6) if stage == "decode" else 0.0) for stage in STAGES},
        "settings": dict(settings),
    }


def to_table(rows: list[dict]):
    """Rows -> a pyarrow Table of `schema()`."""
    return import_pyarrow().Table.from_pylist(rows, schema=schema())
