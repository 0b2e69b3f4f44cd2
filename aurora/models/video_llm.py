"""The composition every Aurora model is: media -> vision tower (with token reducer) -> connector ->
causal language model, with a prompt template that splices visual embeddings into the text.

`VideoLLM` owns no family-specific logic: families (`aurora.models.auroracap`, ...) build its parts
and load their checkpoints. It answers `caption` (one visual, one prompt) and `chat` (a list of
messages with text, image and video parts), streaming when asked.
"""

from __future__ import annotations

import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from transformers import StoppingCriteriaList

from aurora import media
from aurora.errors import CheckpointError, ConfigError
from aurora.generation import CancelCriteria, GenerationOptions, TextCallbackStreamer, cut_at_stop
from aurora.preset import Preset
from aurora.prompts import IMAGE_PLACEHOLDER, get_template, user_content
from aurora.vision.preprocess import FrameTransform
from aurora.vision.tower import MergingVisionTower

@dataclass
class Reply:
    """One answer with what it took: the text, the frames used, token counts and stage times."""

    text: str
    model: str
    frame_indices: list[list[int]] = field(default_factory=list)  # per visual
    frame_timestamps: list[list[float]] = field(default_factory=list)
    visual_tokens_per_frame: list[int] = field(default_factory=list)  # per visual
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finish_reason: str = ""  # stop / length / cancelled
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def to_dict(self) -> dict:
        return asdict(self)


class ReplyStream:
    """Iterate over text deltas as they are generated; `.reply` holds the full Reply afterwards."""

    def __init__(self, run: Callable[[Callable[[str], None]], Reply]):
        self._queue: queue.Queue = queue.Queue()
        self.reply: Reply | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(run,), daemon=True)
        self._thread.start()

    def _work(self, run):
        try:
            self.reply = run(self._queue.put)
        except BaseException as e:  # handed to the consumer's thread below
            self._error = e
        finally:
            self._queue.put(None)

    def __iter__(self) -> Iterator[str]:
        while (delta := self._queue.get()) is not None:
            yield delta
        self._thread.join()
        if self._error is not None:
            raise self._error


class VideoLLM(nn.Module):
    def __init__(
        self,
        tower: MergingVisionTower,
        connector: nn.Module,
        language_model: nn.Module,
        tokenizer,
        preset: Preset,
        name: str = "aurora",
    ):
        super().__init__()
        self.tower = tower
        self.connector = connector
        self.language_model = language_model
        self.tokenizer = tokenizer
        self.preset = preset
        self.name = name
        self.transform = FrameTransform(
            preset.image_size, preset.image_mean, preset.image_std, preset.resize, preset.temporal_input
        )
        channels = tower.config.num_channels
        if channels != self.transform.channels:
            raise CheckpointError(
                f"the vision tower takes {channels} input channels but the preset's temporal_input "
                f"{preset.temporal_input!r} gives {self.transform.channels}; fix aurora_preset.json"
            )
        self.template = get_template(preset.template)
        self.suppressed_token_ids = _never_generated(tokenizer, language_model)

    @property
    def device(self) -> torch.device:
        return next(self.language_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.language_model.parameters()).dtype

    # ---- the pipeline, stage by stage -------------------------------------------------------

    def load_frames(self, visual, num_frames: int | None = None, fps: float | None = None) -> media.Frames:
        if isinstance(visual, media.Frames):
            return visual
        return media.load_visual(
            str(visual), num_frames=num_frames or self.preset.num_frames, fps=fps, sampling=self.preset.sampling,
            size=self.preset.image_size,  # decode at the model's input size: memory follows the model
        )

    def encode(self, pixel_values: torch.Tensor, token_kept_ratio: float) -> torch.Tensor:
        """(T, 3, H, W) frames -> (T, n, D) language-model embeddings, n tokens per frame."""
        pixel_values = pixel_values.to(self.device, self.dtype)
        features = self.tower(pixel_values, token_kept_ratio).features  # (T, n, C)
        return self.connector(features)

    def embed_prompt(self, prompt: str, visuals: list[torch.Tensor]) -> torch.Tensor:
        """Text with one placeholder per frame + per-visual (T, n, D) -> (1, L, D) embeddings.

        Chunks between placeholders are tokenised separately, the first with the tokenizer's
        special tokens (BOS), the rest without, as AuroraCap does.
        """
        frames = [frame for visual in visuals for frame in visual]  # each (n, D)
        chunks = prompt.split(IMAGE_PLACEHOLDER)
        if len(chunks) - 1 != len(frames):
            raise ConfigError(
                f"the prompt has {len(chunks) - 1} {IMAGE_PLACEHOLDER} placeholders for {len(frames)} frames"
            )
        embed_tokens = self.language_model.get_input_embeddings()
        pieces = []
        for i, chunk in enumerate(chunks):
            ids = self.tokenizer.encode(chunk, add_special_tokens=(i == 0))
            if ids:
                pieces.append(embed_tokens(torch.tensor(ids, device=self.device)))
            if i < len(frames):
                pieces.append(frames[i].to(pieces[0].dtype if pieces else self.dtype))
        return torch.cat(pieces, dim=0)[None]

    def generate(
        self,
        inputs_embeds: torch.Tensor,
        options: GenerationOptions,
        on_text=None,
        cancel=None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[list[tuple[str, int, str]], float | None]:
        """Generate from (B, L, D) embeddings (left-padded, with `attention_mask`, when B > 1).

        Returns one (text, generated token count, finish reason) per row, and when the first
        token arrived. Reasons: "stop" (EOS or a stop string), "length" (max_new_tokens) or
        "cancelled" (`cancel` set). Streaming (`on_text`) is for a single row.
        """
        batch = inputs_embeds.shape[0]
        streams = options.streams and batch == 1
        streamer = TextCallbackStreamer(self.tokenizer, on_text if streams else None, options.stop)
        max_new_tokens = options.max_new_tokens or self.preset.max_new_tokens
        kwargs = options.generate_kwargs(max_new_tokens)
        if options.stop:
            kwargs.update(stop_strings=list(options.stop), tokenizer=self.tokenizer)
        if cancel is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([CancelCriteria(cancel)])
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=self.device)
        eos = self._stop_token_ids()
        if options.seed is not None:
            torch.manual_seed(options.seed)
        output = self.language_model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0],
            streamer=streamer if options.streams else None,  # transformers cannot stream beams
            suppress_tokens=self.suppressed_token_ids or None,
            **kwargs,
        )
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

    def _stop_token_ids(self) -> list[int]:
        eos = self.tokenizer.eos_token_id
        ids = [eos] if eos is not None else []
        for stop in self.template.stop:  # template stops that are single tokens end generation
            token_id = self.tokenizer.convert_tokens_to_ids(stop)
            if token_id is not None and token_id != self.tokenizer.unk_token_id and token_id not in ids:
                ids.append(token_id)
        if not ids:
            raise ConfigError("the tokenizer has no EOS token; set eos_token in tokenizer_config.json")
        return ids

    # ---- user-facing calls ------------------------------------------------------------------

    def prepare(self, messages: list[dict], num_frames=None, fps=None, token_kept_ratio=None):
        """Decode, preprocess and encode every visual of `messages`; render and embed the prompt.

        Returns the (1, L, D) prompt embeddings and a Reply holding the metadata so far.
        """
        ratio = self.preset.token_kept_ratio if token_kept_ratio is None else token_kept_ratio
        if not 0 < ratio <= 1:
            raise ConfigError(f"token_kept_ratio must be in (0, 1], got {ratio}")
        if num_frames is not None and num_frames < 1:
            raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
        timings = dict.fromkeys(("decode", "preprocess", "encode", "prefill", "generate"), 0.0)
        reply = Reply(text="", model=self.name, timings=timings)
        turns, encoded = [], []
        for role, parts in _normalise_messages(messages):
            words, frame_counts = [], []
            for kind, value in parts:
                if kind == "text":
                    words.append(value)
                    continue
                with _timed(timings, "decode"):
                    frames = self.load_frames(value, num_frames=num_frames, fps=fps)
                with _timed(timings, "preprocess"):
                    pixels = self.transform(frames.array)
                with _timed(timings, "encode"):
                    embeds = self.encode(pixels, ratio)
                encoded.append(embeds)
                reply.frame_indices.append(list(frames.indices))
                reply.frame_timestamps.append([round(float(t), 6) for t in frames.timestamps])
                reply.visual_tokens_per_frame.append(embeds.shape[1])
                frame_counts.append(len(frames.indices))
            turns.append((role, user_content(frame_counts, " ".join(words))))
        inputs_embeds = self.embed_prompt(self.template.render(turns), encoded)
        reply.prompt_tokens = inputs_embeds.shape[1]
        return inputs_embeds, reply

    @torch.inference_mode()
    def respond(
        self,
        messages: list[dict],
        num_frames: int | None = None,
        fps: float | None = None,
        token_kept_ratio: float | None = None,
        options: GenerationOptions | None = None,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Reply:
        """Answer the last user message of `messages` (OpenAI-style roles, content parts)."""
        return self.respond_batch([messages], num_frames, fps, token_kept_ratio, options, on_text, cancel)[0]

    @torch.inference_mode()
    def respond_batch(
        self,
        conversations: list[list[dict]],
        num_frames: int | None = None,
        fps: float | None = None,
        token_kept_ratio: float | None = None,
        options: GenerationOptions | None = None,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Reply]:
        """Answer several conversations in one generate call (prompts left-padded).

        prefill / generate timings are those of the whole batch.
        """
        options = replace(options or GenerationOptions(), stop=tuple((options or GenerationOptions()).stop) + self.template.stop)
        prepared = [self.prepare(messages, num_frames, fps, token_kept_ratio) for messages in conversations]
        embeds, mask = _left_pad([e for e, _ in prepared])
        start = time.perf_counter()
        results, first = self.generate(embeds, options, on_text, cancel, attention_mask=mask)
        end = time.perf_counter()
        replies = []
        for (_, reply), (text, count, reason) in zip(prepared, results):
            reply.text, reply.generated_tokens, reply.finish_reason = text, count, reason
            reply.timings["prefill"] = (first - start) if first else end - start
            reply.timings["generate"] = (end - first) if first else 0.0
            reply.timings = {k: round(v, 6) for k, v in reply.timings.items()}
            replies.append(reply)
        return replies

    def chat(self, messages: list[dict], stream: bool = False, **kwargs) -> "Reply | ReplyStream":
        """Answer a conversation; with stream=True, iterate over text deltas as they come."""
        options = _options_from(kwargs)
        if stream:
            return ReplyStream(lambda on_text: self.respond(messages, options=options, on_text=on_text, **kwargs))
        return self.respond(messages, options=options, **kwargs)

    def caption(self, visual, prompt: str | None = None, stream: bool = False, **kwargs) -> "Reply | ReplyStream":
        """Caption one video or image (path or `media.Frames`) with the preset's prompt by default."""
        return self.chat(self._caption_messages(visual, prompt), stream=stream, **kwargs)

    def caption_batch(self, visuals: list, prompt: str | None = None, **kwargs) -> list[Reply]:
        """Caption several visuals in one batched generation (no streaming)."""
        options = _options_from(kwargs)
        conversations = [self._caption_messages(visual, prompt) for visual in visuals]
        return self.respond_batch(conversations, options=options, **kwargs)

    def _caption_messages(self, visual, prompt: str | None) -> list[dict]:
        is_image = isinstance(visual, (str, Path)) and Path(visual).suffix.lower() in media.IMAGE_EXTENSIONS
        kind = "image" if is_image else "video"
        content = [{"type": kind, kind: visual}, {"type": "text", "text": prompt or self.preset.default_prompt}]
        return [{"role": "user", "content": content}]


def _left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, L_i, D) prompts -> (B, L, D) left-padded with zeros and the (B, L) attention mask."""
    length = max(row.shape[1] for row in rows)
    embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for b, row in enumerate(rows):
        embeds[b, length - row.shape[1] :] = row[0]
        mask[b, length - row.shape[1] :] = 1
    return embeds, mask


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    timings[stage] += time.perf_counter() - start


def _never_generated(tokenizer, language_model) -> list[int]:
    """Ids a reply must never contain: the visual placeholder and embedding rows past the
    tokenizer (padding rows added when a checkpoint grew its vocabulary, e.g. HF LLaVA's)."""
    rows = language_model.get_output_embeddings().weight.shape[0]
    ids = list(range(len(tokenizer), rows))
    placeholder = tokenizer.get_vocab().get(IMAGE_PLACEHOLDER)
    if placeholder is not None:
        ids.append(placeholder)
    return ids


def _options_from(kwargs: dict) -> GenerationOptions:
    """Pop generation knobs out of kwargs (the rest are media / merging options)."""
    names = ("temperature", "top_p", "num_beams", "max_new_tokens", "seed", "stop")
    return GenerationOptions(**{name: kwargs.pop(name) for name in names if name in kwargs})


def _normalise_messages(messages: list[dict]) -> list[tuple[str, list[tuple[str, object]]]]:
    """OpenAI-style messages -> [(role, [(kind, value), ...])], kind in text / image / video."""
    if not isinstance(messages, list) or not messages:
        raise ConfigError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    out = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ConfigError("each message needs 'role' and 'content'")
        content = message["content"]
        if isinstance(content, str):
            out.append((message["role"], [("text", content)]))
            continue
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "image", "video") or kind not in part:
                raise ConfigError(f"unsupported content part {part!r}: use text, image or video parts")
            parts.append((kind, part[kind]))
        out.append((message["role"], parts))
    return out
