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
class GenerationSettings:
    """The generation section of a model's preset."""

    max_new_tokens: int = 2048  # AuroraCap's inference default

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError(f"invalid preset: max_new_tokens must be >= 1, got {self.max_new_tokens}")


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

    def __init__(self, tokenizer, on_text=None, stop: tuple[str, ...] = (), skip_prompt: bool = False):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt  # models fed input_ids get the prompt back first: not text
        self.on_text = on_text
        self.stop = tuple(s for s in stop if s)
        self.tokens: list[int] = []
        self.emitted = 0  # characters of the decoded text already passed on
        self.first_token_time: float | None = None

    def put(self, value):
        if self.skip_prompt:
            self.skip_prompt = False
            return
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


class Generator:
    """transformers' `generate` on a language model with Aurora's knobs, for every kind of model:
    composed models pass `inputs_embeds`, native ones their own inputs (ids, pixels, positions).

    Adds stop strings, cancellation, seeding, streaming deltas, the time of the first token, and
    ids a reply must never contain; returns (text, generated tokens, finish reason) per row.
    """

    def __init__(self, language_model, tokenizer, template_stops: tuple[str, ...] = (), never: tuple[str, ...] = (),
                 default_max_new_tokens: int = 2048):
        self.language_model, self.tokenizer = language_model, tokenizer
        self.template_stops = tuple(template_stops)
        self.default_max_new_tokens = default_max_new_tokens
        self.suppressed_token_ids = never_generated(tokenizer, language_model, never)

    def __call__(self, inputs: dict, options: GenerationOptions, on_text=None, cancel=None):
        """Generate from `inputs` (B rows, left-padded with an attention mask when B > 1).

        Returns one (text, generated token count, finish reason) per row, and when the first token
        arrived. Reasons: "stop" (EOS or a stop string), "length" (max_new_tokens) or "cancelled"
        (`cancel` set). Streaming (`on_text`) is for a single row.
        """
        batch = inputs["attention_mask"].shape[0]
        streams = options.streams and batch == 1
        streamer = TextCallbackStreamer(self.tokenizer, on_text if streams else None, options.stop,
                                        skip_prompt="input_ids" in inputs)
        max_new_tokens = options.max_new_tokens or self.default_max_new_tokens
        kwargs = options.generate_kwargs(max_new_tokens)
        if options.stop:
            kwargs.update(stop_strings=list(options.stop), tokenizer=self.tokenizer)
        if cancel is not None:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([CancelCriteria(cancel)])
        eos = self.stop_token_ids()
        if options.seed is not None:
            torch.manual_seed(options.seed)
        output = self.language_model.generate(
            **inputs,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0],
            streamer=streamer if options.streams else None,  # transformers cannot stream beams
            suppress_tokens=self.suppressed_token_ids or None,
            **kwargs,
        )
        if "input_ids" in inputs:  # native models return the prompt too
            output = output[:, inputs["input_ids"].shape[1]:]
        results = [self._finish(row.tolist(), eos, max_new_tokens, options, cancel) for row in output]
        if not streams and on_text is not None and batch == 1:
            on_text(results[0][0])
        return results, streamer.first_token_time

    def _finish(self, ids: list[int], eos: list[int], max_new_tokens: int, options, cancel):
        """One generated row -> (text, token count, finish reason)."""
        ended = next((i for i, token in enumerate(ids) if token in eos), None)
        if ended is not None:
            ids = ids[:ended]  # drop EOS and the padding after it
        full_text = self.tokenizer.decode(ids, skip_special_tokens=True).lstrip()  # the template's space before the answer
        text = cut_at_stop(full_text, options.stop)
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
        elif ended is not None or text != full_text or len(ids) < max_new_tokens:
            reason = "stop"
        else:
            reason = "length"
        return text, len(ids), reason

    def stop_token_ids(self) -> list[int]:
        eos = self.tokenizer.eos_token_id
        ids = [eos] if eos is not None else []
        for stop in self.template_stops:  # template stops that are single tokens end generation
            token_id = self.tokenizer.convert_tokens_to_ids(stop)
            if token_id is not None and token_id != self.tokenizer.unk_token_id and token_id not in ids:
                ids.append(token_id)
        if not ids:
            raise ConfigError("the tokenizer has no EOS token; set eos_token in tokenizer_config.json")
        return ids


def never_generated(tokenizer, language_model, tokens: tuple[str, ...] = ()) -> list[int]:
    """Ids a reply must never contain: the given tokens (visual placeholders) and embedding rows
    past the tokenizer (padding rows added when a checkpoint grew its vocabulary, e.g. HF LLaVA's)."""
    rows = language_model.get_output_embeddings().weight.shape[0]
    ids = list(range(len(tokenizer), rows))
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in tokens if token in vocab]
    return ids
