"""Generation options and text streaming on top of transformers' `generate`.

`GenerationOptions` is the one place the user-facing knobs (temperature, top_p, beams, max new
tokens, seed) become transformers' generation arguments. `TextCallbackStreamer` turns the token
stream into text deltas for a callback and records when the first token arrived.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from aurora.errors import ConfigError


@dataclass
class GenerationOptions:
    temperature: float = 0.0  # 0 = greedy (AuroraCap's default)
    top_p: float = 1.0
    num_beams: int = 1
    max_new_tokens: int | None = None  # None = the model preset's default
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.seed is not None and not -(2**63) <= self.seed < 2**63:
            raise ConfigError(f"seed must be a 64-bit signed integer (-2**63 .. 2**63-1), got {self.seed}")
        self.stop = tuple(self.stop)

    @property
    def streams(self) -> bool:
        """transformers cannot stream beam search; beams then arrive as one piece at the end."""
        return self.num_beams == 1

    def generate_kwargs(self, max_new_tokens: int) -> dict:
        kwargs = dict(max_new_tokens=max_new_tokens, num_beams=self.num_beams)
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs


class TextCallbackStreamer(BaseStreamer):
    """Decodes tokens as they come and calls `on_text(delta)` with text that is final.

    Text is held back while it ends in an incomplete UTF-8 sequence (shown by tokenizers as
    U+FFFD), so multi-byte characters are never split. Only generated tokens are seen: with
    `inputs_embeds`, transformers passes no prompt ids (the first `put` is empty).
    """

    def __init__(self, tokenizer, on_text=None, stop: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.stop = tuple(s for s in stop if s)
        self.tokens: list[int] = []
        self.emitted = 0  # characters of the decoded text already passed on
        self.first_token_time: float | None = None

    def put(self, value):
        ids = value.reshape(-1).tolist()
        if not ids:
            return
        if self.first_token_time is None:
            self.first_token_time = time.perf_counter()
        if self.on_text is None:  # timing only (also for batches, whose rows arrive interleaved)
            return
        self.tokens.extend(ids)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        self._emit(text)

    def end(self):
        if self.on_text is None:
            return
        self._emit(self.tokenizer.decode(self.tokens, skip_special_tokens=True), final=True)

    def _emit(self, text: str, final: bool = False):
        text = cut_at_stop(text.lstrip(), self.stop)  # as `_finish`: no space before the first word
        if not final:  # hold back a tail that may still grow into a stop string
            text = text[: len(text) - _stop_prefix_length(text, self.stop)]
        if len(text) > self.emitted and self.on_text is not None:
            self.on_text(text[self.emitted :])
        self.emitted = max(self.emitted, len(text))


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """Text up to the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is the start of a stop string."""
    return max((n for stop in stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0)


class CancelCriteria(StoppingCriteria):
    """Stops generation once `event` is set (a client went away, a user pressed stop)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
