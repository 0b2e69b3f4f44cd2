"""The composition a composed family is: media -> vision tower (with its in-encoder reducer) ->
connector (projection, maybe pooling) -> causal language model fed `inputs_embeds`.

`VideoLLM` owns no family-specific logic: a family (`aurora/models/<family>.py`) builds its parts
and loads its checkpoints. Per visual, the vision stage returns (B, n, D) token blocks — one per
frame, or one per video — that replace the prompt's placeholders in order (`aurora.models.splice`,
the same splice training uses); the preset's template layout puts the placeholders in the text
(`aurora.prompts`). `ChatModel` answers `caption` / `chat` / `caption_batch` on top of one method,
`prepare`, so every kind of model shares replies, streaming, stop strings and cancellation.
"""

from __future__ import annotations

import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from aurora import media
from aurora.errors import AuroraWarning, CheckpointError, ConfigError
from aurora.generation import GenerationOptions, Generator
from aurora.messages import normalise_messages
from aurora.models.reply import Reply, ReplyStream
from aurora.models.splice import pad, splice
from aurora.preset import Preset
from aurora.prompts import IMAGE_PLACEHOLDER, get_template, segment, user_content
from aurora.vision.merge import unmerge
from aurora.vision.reduce import MERGES, METHODS, check_ratio, reuse_budget, split_ratio
from aurora.vision.temporal import merge_across_time

__all__ = ["ChatModel", "Reply", "ReplyStream", "VideoLLM"]
STAGES = ("decode", "preprocess", "encode", "prefill", "generate")
_ASKED = threading.local()  # per thread, {id(model): the reducer method a call asked for} (`ChatModel.reducing`)


class ChatModel(nn.Module):
    """The answering surface every model kind shares. A subclass provides `preset`, `name`,
    `generator` (an `aurora.generation.Generator`), `template` and `prepare(messages, num_frames,
    fps, token_kept_ratio) -> (one row's inputs, Reply so far)`, and `collate(rows) -> generate's inputs`."""

    # Frames are decoded scaled down so their shorter side is this (memory follows the model, not the
    # file); None keeps the file's size, for kinds that size frames themselves (Qwen2-VL's min/max pixels).
    decode_size: int | None = None
    part_kinds: tuple[str, ...] = ("text", "image", "video")  # message parts it takes ("audio": an audio branch)
    reductions: tuple[str, ...] = ("tome",)  # reducer methods it implements (aurora.vision.reduce.METHODS)
    training_reductions: tuple[str, ...] = ("tome",)  # those it can train with (aurora.train: temporal_share, reuse_share)
    # LoRA (`aurora train --lora-rank`) wraps only the modules under this name of `language_model`
    # (None: all of it): for a native model whose `language_model` is the whole transformers model
    lora_within: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.language_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.language_model.parameters()).dtype

    @property
    def context_length(self) -> int | None:
        """Positions the language model takes (max_position_embeddings), None when its config states none."""
        return getattr(self.language_model.config, "max_position_embeddings", None)

    def load_frames(self, visual, num_frames: int | None = None, fps: float | None = None) -> media.Frames:
        if isinstance(visual, media.Frames):
            return visual
        return media.load_visual(str(visual), num_frames=num_frames or self.preset.media.num_frames, fps=fps,
                                 sampling=self.preset.media.sampling, size=self.decode_size)

    def load_sound(self, path) -> media.Frames:
        """An audio part as `Frames` with no pictures (models with an audio branch override this)."""
        raise ConfigError("this model has no audio branch: it takes text, image and video parts")

    def set_reduction(self, method: str) -> None:
        """Reduce with `method` from now on (`--reduction`), if this model implements it."""
        self.check_reduction(method)
        self.preset.reducer.method = method

    @property
    def reduction(self) -> str:
        """The reducer method in force: the one the current call asked for (`reducing`), else the preset's."""
        return getattr(_ASKED, "methods", {}).get(id(self)) or self.preset.reducer.method

    @contextmanager
    def reducing(self, method: str | None):
        """Reduce with `method` for what this thread does inside the block (one call's `reduction=`;
        None: the preset's), leaving the preset and other threads' calls (the server's) as they are."""
        if method is None:
            yield
            return
        self.check_reduction(method)
        methods = _ASKED.__dict__.setdefault("methods", {})
        before = methods.get(id(self))
        methods[id(self)] = method
        try:
            yield
        finally:
            if before is None:
                del methods[id(self)]
            else:
                methods[id(self)] = before

    def check_reduction(self, method: str) -> None:
        """A one-line ConfigError unless this model implements the reducer `method`."""
        if method not in self.reductions:
            raise ConfigError(f"reduction {method!r} is not implemented for {self.preset.family} "
                              f"models: use {' or '.join(self.reductions)}")

    def check_options(self, num_frames=None, token_kept_ratio=None) -> float:
        """The ratio to use (the preset's by default), checked once for every entry point."""
        if num_frames is not None and num_frames < 1:
            raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
        self.check_reduction(self.reduction)
        return check_ratio(self.preset.reducer.token_kept_ratio if token_kept_ratio is None else token_kept_ratio)

    def render_turns(self, messages: list[dict], num_frames, fps, reply: Reply, chat, on_visual) -> list[tuple[str, str]]:
        """Messages -> (role, text) turns with every visual as its placeholders (the preset's layout).

        Each visual is decoded (timed as "decode"), recorded in `reply`, and handed to
        `on_visual(frames)`, which encodes it its model's way and returns how many placeholders it takes
        (or the visual's own text holding them)."""
        return self.layout_turns(self.read_messages(messages, num_frames, fps, reply, on_visual), chat)

    def layout_turns(self, read: list[tuple[str, list]], chat) -> list[tuple[str, str]]:
        """`read_messages`' turns -> (role, text) turns, each visual as its count of placeholders
        laid out by the preset's layout and `chat`'s join."""
        turns = []
        for role, parts in read:
            words = [value for kind, value in parts if kind == "text"]
            counts = [value for kind, value in parts if kind != "text"]
            turns.append((role, user_content(counts, " ".join(words), self.preset.template.layout, chat.visual_join)))
        return turns

    def read_messages(self, messages: list[dict], num_frames, fps, reply: Reply, on_visual) -> list[tuple[str, list]]:
        """Messages -> (role, parts) with every visual decoded (timed as "decode"), recorded in
        `reply` and replaced by ("image" | "video", on_visual(frames)); text parts stay ("text", str).
        For a model whose own chat template lays visuals out (`render_turns` uses the preset's)."""
        turns = []
        for role, parts in normalise_messages(messages, self.part_kinds):
            read = []
            for kind, value in parts:
                if kind == "text":
                    read.append((kind, value))
                    continue
                with _timed(reply.timings, "decode"):
                    if kind == "audio":
                        frames = self.load_sound(value)
                    else:
                        frames = self.load_frames(value, num_frames=num_frames, fps=fps)
                reply.frame_indices.append(list(frames.indices))
                reply.frame_timestamps.append([round(float(t), 6) for t in frames.timestamps])
                read.append(("image" if frames.is_image else "video", on_visual(frames)))
            turns.append((role, read))
        return turns

    @torch.inference_mode()
    def respond(self, messages: list[dict], num_frames: int | None = None, fps: float | None = None,
                token_kept_ratio: float | None = None, options: GenerationOptions | None = None,
                on_text: Callable[[str], None] | None = None, cancel: threading.Event | None = None,
                reduction: str | None = None) -> Reply:
        """Answer the last user message of `messages` (OpenAI-style roles, content parts)."""
        return self.respond_batch([messages], num_frames, fps, token_kept_ratio, options, on_text, cancel,
                                  reduction=reduction)[0]

    @torch.inference_mode()
    def respond_batch(self, conversations: list[list[dict]], num_frames: int | None = None, fps: float | None = None,
                      token_kept_ratio: float | None = None, options: GenerationOptions | None = None,
                      on_text: Callable[[str], None] | None = None,
                      cancel: threading.Event | None = None, template: str | None = None,
                      reduction: str | None = None) -> list[Reply]:
        """Answer several conversations in one generate call (prompts left-padded).

        `template` names another conversation template than the model's (a benchmark protocol's);
        `reduction` another reducer method than the preset's, for this call only (`reducing`).
        prefill / generate timings are those of the whole batch.
        """
        options = options or GenerationOptions()
        stops = get_template(template).stop if template else self.template.stop
        options = replace(options, stop=tuple(options.stop) + stops)
        extra = {"template": template} if template else {}
        prepared = [self.prepare_reduced(messages, num_frames, fps, token_kept_ratio, reduction, **extra)
                    for messages in conversations]
        inputs = self.collate([row for row, _ in prepared])
        start = time.perf_counter()
        results, first = self.generator(inputs, options, on_text, cancel)
        end = time.perf_counter()
        replies = []
        for (_, reply), (text, count, reason) in zip(prepared, results):
            reply.text, reply.generated_tokens, reply.finish_reason = text, count, reason
            reply.timings["prefill"] = (first - start) if first else end - start
            reply.timings["generate"] = (end - first) if first else 0.0
            reply.timings = {k: round(v, 6) for k, v in reply.timings.items()}
            replies.append(reply)
        self.annotate(replies)
        return replies

    def prepare_reduced(self, messages: list[dict], num_frames=None, fps=None, token_kept_ratio=None,
                        reduction: str | None = None, **extra):
        """`prepare` with the reducer method `reduction` for this call (None: the preset's), the
        reply recording the method used."""
        with self.reducing(reduction):
            row, reply = self.prepare(messages, num_frames, fps, token_kept_ratio, **extra)
            reply.reduction = self.reduction
        return row, reply

    def annotate(self, replies: list[Reply]) -> None:
        """Called with the replies of a generated batch, in its row order: a model adds what else it
        reports per answer (a mixture of experts: the routing). Nothing by default."""

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
        content = [{"type": kind, kind: visual}, {"type": "text", "text": prompt or self.preset.template.default_prompt}]
        return [{"role": "user", "content": content}]


class VideoLLM(ChatModel):
    reductions = METHODS
    training_reductions = METHODS  # "reuse" too: its steps run `_encode_reused` as inference does

    def __init__(self, tower: nn.Module, connector: nn.Module, language_model: nn.Module, tokenizer, preset: Preset,
                 name: str = "aurora"):
        super().__init__()
        self.tower = tower
        self.connector = connector
        self.language_model = language_model
        self.tokenizer = tokenizer
        self.preset = preset
        self.name = name
        self.transform = preset.vision.transform()
        channels = tower.config.num_channels
        if channels != self.transform.channels:
            raise CheckpointError(
                f"the vision tower takes {channels} input channels but the preset's temporal_input "
                f"{preset.vision.temporal_input!r} gives {self.transform.channels}; fix aurora_preset.json"
            )
        self.template = get_template(preset.template.name)
        self.generator = Generator(language_model, tokenizer, self.template.stop, (IMAGE_PLACEHOLDER,),
                                   preset.generation.max_new_tokens)

    @property
    def decode_size(self) -> int:
        return self.preset.vision.image_size  # the tower's input: a shortest-edge or squash resize to it

    # ---- the vision stage -----------------------------------------------------------------------

    def encode(self, pixel_values: torch.Tensor, token_kept_ratio: float) -> "torch.Tensor | list[torch.Tensor]":
        """(T, C, H, W) frames of one visual -> its token blocks, (B, n, D): the tower (with ToMe at
        the ratio), then the connector. B = T for a projector, 1 for a per-video connector (pooling).
        With merging across time (the preset's reducer method "temporal" or "both") the blocks are a
        list of B (n_b, D) tensors, each frame holding the tokens first seen in it."""
        return self.encode_counted(pixel_values, token_kept_ratio)[0]

    def encode_counted(self, pixel_values: torch.Tensor, token_kept_ratio: float):
        """`encode`, and the visual tokens after each stage: the patches, what the encoder passes on
        (after ToMe), what reaches the language model (after the connector and merging across time).

        A connector that needs the frame grid (`needs_grid`: pooling) gets merged tokens put back on
        it (`merge.unmerge`), so in-encoder merging and pooling compose: merging speeds the tower,
        pooling sets how many tokens reach the LM. `split_ratio` shares the ratio between ToMe and
        merging across time, which runs on the connector's output (frames x tokens). A video under
        "reuse" goes to `_encode_reused`; an image under it gets ToMe."""
        blocks, counts, _ = self._encode(pixel_values, token_kept_ratio)
        return blocks, counts

    @torch.inference_mode()
    def token_groups(self, pixel_values: torch.Tensor, token_kept_ratio: float) -> torch.Tensor | None:
        """(T, C, H, W) frames -> (T, h, w): for every patch, the visual token it ended in, numbered
        over the whole visual (0, 1, ... in order of first appearance), as `encode` reduces with the
        method in force. A token merged across frames keeps one number in all of them. A pooling
        connector's tokens are not per patch: with one the numbers are the encoder's (ToMe's), and
        under "reuse" (no ToMe) there are none (None)."""
        groups = self._encode(pixel_values, token_kept_ratio, track=True)[2]
        if groups is None:
            return None
        side = pixel_values.shape[-1] // self.tower.patch_size
        return torch.unique(groups, return_inverse=True)[1].view(groups.shape[0], -1, side)

    def _encode(self, pixel_values: torch.Tensor, token_kept_ratio: float, track: bool = False):
        """`encode_counted`'s work; with `track`, also the (T, P) token each patch ended in."""
        pixel_values = pixel_values.to(self.device, self.dtype)
        method = self.reduction
        budget = reuse_budget(method, token_kept_ratio)
        if budget is not None and pixel_values.shape[0] > 1:
            return self._encode_reused(pixel_values, token_kept_ratio, budget)
        tower_ratio, temporal = split_ratio("tome" if method == "reuse" else method, token_kept_ratio)
        grid = getattr(self.connector, "needs_grid", False) and tower_ratio < 1
        out = self.tower(pixel_values, tower_ratio, track_source=grid or track)
        features = unmerge(out.features, out.source) if grid else out.features  # (T, n or P, C)
        blocks = self.connector(features)  # (B, m, D)
        frames, side = pixel_values.shape[0], pixel_values.shape[-1] // self.tower.patch_size
        counts = {"patches": frames * side * side, "encoder": frames * out.features.shape[1],
                  "language_model": blocks.shape[0] * blocks.shape[1]}
        groups = None
        if track:  # the encoder's token of each patch, numbered over the visual
            n = out.features.shape[1]
            groups = out.source + n * torch.arange(frames, device=out.source.device)[:, None]  # (T, P)
        if temporal is None and tower_ratio < 1:
            self._warn_below_tome_floor(pixel_values, tower_ratio)
        if temporal is not None:
            height, width = pixel_values.shape[-2:]
            full = blocks.shape[0] * blocks.shape[1] if grid or blocks.shape[0] == 1 else \
                frames * self.tower.tokens_per_frame(height, width, 1.0)
            sizes = None if grid or blocks.shape[0] != frames else out.sizes
            blocks, source = self._merge_across_time(blocks, max(1, round(temporal * full)), sizes)
            counts["language_model"] = sum(block.shape[0] for block in blocks)
            if track and source is not None:  # per-frame blocks: the merged token of each encoder token
                groups = source[groups]
        return blocks, counts, groups

    def _warn_below_tome_floor(self, pixel_values: torch.Tensor, ratio: float) -> None:
        """Warn when ToMe alone cannot go as low as the ratio asks: its per-layer rule (at most half
        a layer's tokens go) stops at a floor that a shallow tower reaches early (the default
        model's: 10 of 64 tokens a frame), and the tokens would silently stay above the share."""
        height, width = pixel_values.shape[-2:]
        patches = (height // self.tower.patch_size) * (width // self.tower.patch_size)
        lowest = self.tower.tokens_per_frame(height, width, 1e-9)
        if ratio * patches < lowest:
            warnings.warn(f"ToMe keeps at least {lowest} of {patches} tokens a frame in this tower "
                          f"({lowest / patches:.0%}), more than --token-kept-ratio {ratio:g} asks; "
                          "--reduction both reaches it by merging across frames too", AuroraWarning, stacklevel=4)

    def _encode_reused(self, pixel_values: torch.Tensor, ratio: float, budget: float):
        """A video under "reuse": the tower computes frame 0 and the `budget` share of later patches
        that changed most (`MergingVisionTower.forward_reused`; the rest reuse their previous frame's
        states), the connector runs on the whole grid, and its tokens are merged across time down to
        round(ratio * n) (`_merge_across_time`, as "temporal" does: a reused place repeats its source
        exactly, so it merges into it first), per frame (a frame may get none) or, for a per-video
        connector (pooling), over its time steps. (Keeping the tokens that changed most instead,
        `keep_distinct`, keeps only frame 0's below one frame's worth of tokens: 5.7 / 3.2 points
        lower at 10% / 5% on 500 long synthetic clips with the bundled model.) counts["encoder"] is
        the patches the encoder computed; the groups are the merged token of each patch (per-frame
        connectors), else None."""
        out, reuse = self.tower.forward_reused(pixel_values, budget)
        blocks = self.connector(out.features)  # (B, m, D)
        keep = max(1, round(ratio * blocks.shape[0] * blocks.shape[1]))
        kept, source = self._merge_across_time(blocks, keep, None)
        counts = {"patches": reuse.computed.numel(), "encoder": int(reuse.computed.sum()),
                  "language_model": sum(block.shape[0] for block in kept)}
        groups = None if source is None else source.view(pixel_values.shape[0], -1)
        return kept, counts, groups

    def _merge_across_time(self, blocks: torch.Tensor, keep: int, sizes: torch.Tensor | None):
        """(B, m, D) connector blocks -> `keep` tokens merged across time, as a list of blocks: per
        frame (each holds the tokens first seen in it, maybe none) for a per-frame connector; one
        block for a per-video one (pooling, whose (t', h', w') grid is unflattened to t' steps).
        Also the (B * m,) merged token of each input token for a per-frame connector, else None."""
        if blocks.shape[0] > 1:
            merged = merge_across_time(blocks, keep, sizes)
            per_frame = torch.bincount(merged.frames(blocks.shape[1]), minlength=blocks.shape[0])
            return list(merged.tokens.split(per_frame.tolist())), merged.source
        steps = getattr(self.connector, "pooling_shape", (1,))[0]
        merged = merge_across_time(blocks[0].view(steps, -1, blocks.shape[-1]), keep)
        return [merged.tokens], None

    def encode_visuals(self, pixels: list[torch.Tensor], token_kept_ratio: float) -> list[torch.Tensor]:
        """Several visuals' (T_i, C, H, W) frames through the tower in one batch, then the connector
        per visual -> one (B_i, n, D) tensor of blocks each (training batches). With merging across
        time ("temporal", "both") each visual is encoded as at inference: a list of blocks."""
        method = self.reduction
        if method not in self.training_reductions:
            raise ConfigError(f"reducer method {method!r} works at inference only; train with one of "
                              f"{self.training_reductions} (set reducer.method in aurora_preset.json)")
        if method != "tome":  # merging across time is per visual
            return [self.encode(p, token_kept_ratio) for p in pixels]
        frames = torch.cat(pixels).to(self.device, self.dtype)
        features = self.tower(frames, token_kept_ratio).features  # (sum T_i, n, C)
        return [self.connector(part) for part in features.split([p.shape[0] for p in pixels])]

    def training_logits(self, samples, token_kept_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Training samples (frames + token segments with labels) -> (B, L, V) logits and (B, L) labels."""
        from aurora.train.batch import build_inputs

        embeds, mask, labels = build_inputs(self, samples, token_kept_ratio)
        return self.language_model(inputs_embeds=embeds, attention_mask=mask).logits, labels

    def embed_prompt(self, prompt: str, visuals: list[torch.Tensor]) -> torch.Tensor:
        """A rendered prompt with one placeholder per block + per-visual (B, n, D) blocks -> (1, L, D)."""
        segments, labels = segment([(prompt, False)], self.tokenizer)
        blocks = [block for visual in visuals for block in visual]  # each (n, D)
        embeds, _ = splice(segments, labels, blocks, self.language_model.get_input_embeddings())
        return embeds[None]

    # ---- answering ------------------------------------------------------------------------------

    def prepare(self, messages: list[dict], num_frames=None, fps=None, token_kept_ratio=None, template=None):
        """Decode, preprocess and encode every visual of `messages`; render and embed the prompt
        (with the model's template, or the one named).

        Returns the (1, L, D) prompt embeddings and a Reply holding the metadata so far.
        """
        ratio = self.check_options(num_frames, token_kept_ratio)
        chat = get_template(template) if template else self.template
        reply = Reply(text="", model=self.name, timings=dict.fromkeys(STAGES, 0.0))
        encoded = []

        def encode_visual(frames: media.Frames) -> int:
            with _timed(reply.timings, "preprocess"):
                pixels = self.transform(frames.array)
            with _timed(reply.timings, "encode"):
                blocks, counts = self.encode_counted(pixels, ratio)  # (B, n, D)
            encoded.append(blocks)
            reply.visual_tokens_per_frame.append(round(counts["language_model"] / len(blocks)))
            reply.visual_tokens.append(counts)
            return len(blocks)

        turns = self.render_turns(messages, num_frames, fps, reply, chat, encode_visual)
        inputs_embeds = self.embed_prompt(chat.render(turns), encoded)
        reply.prompt_tokens = inputs_embeds.shape[1]
        return inputs_embeds, reply

    def collate(self, rows: list[torch.Tensor]) -> dict:
        """(1, L_i, D) prompts -> generate's inputs, left-padded with zeros."""
        embeds, mask = pad([row[0] for row in rows], side="left")
        return {"inputs_embeds": embeds, "attention_mask": mask}


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    timings[stage] += time.perf_counter() - start


def _options_from(kwargs: dict) -> GenerationOptions:
    """Pop generation knobs out of kwargs (the rest are media / merging options)."""
    names = ("temperature", "top_p", "num_beams", "max_new_tokens", "seed", "stop")
    return GenerationOptions(**{name: kwargs.pop(name) for name in names if name in kwargs})
