"""LLaVA-style video LLMs run natively — LLaVA-OneVision and LLaVA-NeXT-Video: transformers' own
`*ForConditionalGeneration` (vision tower, projector, the family's pooling and newline token, LM)
with Aurora's media loader, preprocessing and token reduction in front. The two families differ
only in the facts of a `Spec` (aurora/models/llava_onevision.py, llava_next_video.py).

Preprocessing (no torchvision): video frames through `aurora.vision.processor.FrameProcessor` with
the checkpoint's video (else image) processor settings; images through transformers' own Pil image
processor of the family, whose anyres tiling (best grid of tiles + the whole image) it owns.

Prompt: the checkpoint's chat template (the tokenizer's, or chat_template.json / .jinja) where it
has one, each visual as its model's `<image>` / `<video>` token; else the preset's Aurora template
(a family fallback in aurora.prompts, which renders a turn of visuals then text as llava-hf's
published templates do; training renders with it). Each visual's token then becomes one per feature.

Token reduction at `token_kept_ratio` r < 1 (at 1.0 the features are transformers' own
`get_video_features` / `get_image_features`):
1. ToMe inside the vision tower (`aurora.vision.tower`, AuroraCap's rule: r of the patches leave
   the encoder), so the tower runs faster;
2. the merged tokens are put back on the patch grid (`merge.unmerge`, as PLLaVA's pooling composes
   with ToMe) and go through the family's own modules unchanged: projector, then OneVision's 2x2
   bilinear pooling / NeXT-Video's 2x2 average-pool resampler, or for an image the anyres packing
   (unpad, a newline per row);
3. pooling keeps the grid's count, so after it `aurora.vision.temporal.keep_distinct` keeps
   round(r * n) of the visual's n pooled tokens (what changes since the previous frame; the first
   frame first; an image ranks its tokens by distance from their mean), in their order. With the
   reducer method "temporal" or "both" a video's pooled tokens are merged across time instead
   (`merge_across_time`, down to the same count; ToMe in the tower as `split_ratio` says).
With the reducer method "reuse" a video's tower skips what repeats instead of merging
(`aurora.vision.reuse`, through `MergingVisionTower.forward_reused`): it computes frame 0 and the
r share of later patches whose pixels changed most since the previous frame, the rest reuse their
previous frame's states, so the tower costs about (1 + r * (T - 1)) / T of the whole; its features
are on the whole (T, P) patch grid, so step 2's modules and step 3's keep_distinct follow as above
(a reused token equals its source frame's and is ranked last). Images keep ToMe.
Count rule: a video reaches the LM as max(1, round(r * T * h' * w')) tokens (T frames, h' x w' the
pooled grid) plus OneVision's one newline token; an image as max(1, round(r * n)) of the n tokens
(newlines included) transformers would give it. So the share reaching the LM is r, up to rounding
and the one newline. `Reply.visual_tokens` reports patches, encoder (the tokens the encoder
computed: after ToMe, or under "reuse" the patches it ran) and language_model.

OneVision answers a prompt with several images as its processor does: one tile each (no anyres).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from aurora import media
from aurora.errors import CheckpointError, ConfigError
from aurora.generation import Generator
from aurora.models.native import NativeModel, chat_template, open_checkpoint, save_native
from aurora.models.registry import Family
from aurora.models.reply import Reply
from aurora.models.splice import pad
from aurora.models.video_llm import STAGES, _timed
from aurora.models.weights import quiet_transformers, read_config
from aurora.preset import Preset
from aurora.prompts import IGNORE, IMAGE_PLACEHOLDER, get_template
from aurora.vision.merge import unmerge
from aurora.vision.processor import FrameProcessor
from aurora.vision.reduce import METHODS, reuse_budget, split_ratio
from aurora.vision.temporal import keep_distinct, merge_across_time
from aurora.vision.tower import MergingVisionTower


@dataclass(frozen=True)
class Spec:
    """One LLaVA-style family's facts."""

    family: str
    model_type: str  # config.json's, also the layout name
    model_class: str  # the transformers class
    image_processor: str  # transformers' Pil image processor (anyres tiling)
    default_image_processor: Callable[[object], dict]  # config -> that processor's kwargs without a preprocessor_config.json
    video_tokens: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]  # (core, (T, P, C) tower features) -> (T, m, D)
    pack_images: Callable[[torch.nn.Module, list, torch.Tensor], torch.Tensor]  # (core, [(tiles, P, D)], sizes) -> (n, D)
    video_newline: bool  # one image_newline embedding after a video's tokens
    single_tile_when_several_images: bool
    default_preset: Callable[[], Preset]


class NativeLlava(NativeModel):
    """transformers' LLaVA-style model fed by Aurora: always `inputs_embeds`, so the full and the
    reduced path meet the language model the same way."""

    reductions = METHODS

    def __init__(self, model, tokenizer, preset: Preset, spec: Spec, image_processor, video_processor: FrameProcessor,
                 chat_template: str | None = None, name: str | None = None):
        super().__init__()
        self.model, self.tokenizer, self.preset, self.spec = model, tokenizer, preset, spec
        self.name = name or spec.family
        self.image_processor, self.video_processor, self.chat_template = image_processor, video_processor, chat_template
        config = model.config
        self.visual_token = {kind: tokenizer.convert_ids_to_tokens(getattr(config, f"{kind}_token_id"))
                             for kind in ("image", "video")}
        self.template = get_template(preset.template.name)
        self.generator = Generator(model, tokenizer, self.template.stop, tuple(self.visual_token.values()),
                                   preset.generation.max_new_tokens)

    # ---- the vision stage -----------------------------------------------------------------------

    def pixels(self, frames: media.Frames) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A visual's model inputs: a video's (T, 3, S, S) frames, or an image's (tiles, 3, S, S)
        anyres tiles (the whole image first) and its (1, 2) original (height, width)."""
        if not frames.is_image:
            return self.video_processor(frames.array), None
        out = self.image_processor(images=[Image.fromarray(frames.array[0])], return_tensors="pt")
        return out["pixel_values"][0], out["image_sizes"]

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, sizes: torch.Tensor | None, ratio: float,
               single_tile: bool = False) -> tuple[torch.Tensor, dict]:
        """One visual's `pixels` -> its (n, D) language-model tokens and the counts after each stage:
        "patches" (the visual's), "encoder" (the tokens the encoder computed: what ToMe passed on, or
        under "reuse" the patches it ran, the others reusing an earlier frame's) and "language_model"."""
        core, config = self.model.model, self.model.config
        if single_tile:
            pixels = pixels[:1]
        pixels = pixels.to(self.device, self.model.dtype)
        side = config.vision_config.image_size // config.vision_config.patch_size
        patches = pixels.shape[0] * side * side
        if ratio == 1:
            if sizes is None:
                tokens = core.get_video_features(pixels[None]).pooler_output[0]
            else:
                # OneVision's multi-image rule: a prompt with several images (any count > 1) gets one tile each
                extra = {"batch_num_images": torch.tensor([2])} if single_tile else {}
                tokens = core.get_image_features(pixels, sizes.to(self.device), **extra).pooler_output[0]
            return tokens, {"patches": patches, "encoder": patches, "language_model": tokens.shape[0]}
        # a video's reducer method may skip what repeats ("reuse") or merge across time ("temporal" / "both":
        # split_ratio); an image's is ToMe
        method = self.reduction
        budget = reuse_budget(method, ratio) if sizes is None else None
        if budget is not None:
            temporal = None
            grid, encoder = self.reused_tower(pixels, budget)  # (T, P, C) on the patch grid
        else:
            tower_ratio, temporal = split_ratio(method, ratio) if sizes is None else (ratio, None)
            grid, encoder = self.reduced_tower(pixels, tower_ratio)  # (N, P, C) on the patch grid
        if sizes is None:
            pooled = self.spec.video_tokens(core, grid)  # (T, m, D)
            keep = round(ratio * pooled.shape[0] * pooled.shape[1])
            if temporal is None:
                tokens = pooled.flatten(0, 1)[keep_distinct(pooled, keep)]
            else:  # tokens alike from frame to frame merged, in the order they first appear
                tokens = merge_across_time(pooled, max(1, keep)).tokens
            if self.spec.video_newline:
                tokens = torch.cat([tokens, core.image_newline[None].to(tokens)])
        else:
            packed = self.spec.pack_images(core, [core.multi_modal_projector(grid)], sizes.to(self.device))
            tokens = packed[keep_distinct(packed[None], round(ratio * packed.shape[0]))]
        return tokens, {"patches": patches, "encoder": encoder, "language_model": tokens.shape[0]}

    def reduced_tower(self, pixels: torch.Tensor, ratio: float) -> tuple[torch.Tensor, int]:
        """(N, 3, S, S) -> the tower's selected layer with ToMe at `ratio`, back on the (N, P, C)
        patch grid, and the tokens the encoder passed on."""
        out = self.merging_tower()(pixels, ratio, track_source=True)
        return unmerge(out.features, out.source), out.features.shape[0] * out.features.shape[1]

    def reused_tower(self, pixels: torch.Tensor, budget: float) -> tuple[torch.Tensor, int]:
        """A video's (T, 3, S, S) frames -> the tower's selected layer on the (T, P, C) patch grid, the
        encoder having computed frame 0 and the `budget` share of later patches that changed most
        (`aurora.vision.reuse`), and the count of patches it computed."""
        out, reuse = self.merging_tower().forward_reused(pixels, budget)
        return out.features, int(reuse.computed.sum())

    def merging_tower(self) -> MergingVisionTower:
        """transformers' tower run by Aurora's loop (ToMe or reuse), after a check that the config's
        feature selection is one layer with CLS dropped exactly when the tower has one."""
        config = self.model.config
        layer = config.vision_feature_layer
        tower = MergingVisionTower(self.model.model.vision_tower, feature_layer=layer if isinstance(layer, int) else 0,
                                   position_interpolation="transformers",
                                   proportional_attention=self.preset.reducer.proportional_attention,
                                   merge_schedule=self.preset.reducer.merge_schedule)
        if not isinstance(layer, int) or (config.vision_feature_select_strategy == "default") != tower.has_cls:
            raise ConfigError(f"token_kept_ratio < 1 needs one vision_feature_layer and the CLS token dropped exactly "
                              f"when the tower has one; this {self.spec.family} config has {layer!r} / "
                              f"{config.vision_feature_select_strategy!r}: use token_kept_ratio 1.0")
        return tower

    # ---- the prompt -----------------------------------------------------------------------------

    def prompt_ids(self, prompt: str, visuals: list[tuple[str, int]], from_template: bool) -> list[int]:
        """A rendered prompt with one marker per visual -> ids with each visual's token repeated
        once per feature. Markers: the Aurora template's placeholder (one per visual, in order) or,
        from the checkpoint's chat template, the model's own image / video tokens (in order per
        kind: such templates may put a message's images before its videos)."""
        config = self.model.config
        token_ids = {"image": config.image_token_id, "video": config.video_token_id}
        markers = [IMAGE_PLACEHOLDER] if from_template else list(dict.fromkeys(self.visual_token.values()))
        pieces = re.split("(" + "|".join(re.escape(m) for m in markers) + ")", prompt)  # text, marker, text, ...
        in_order = iter(visuals)
        per_kind = {kind: iter([v for v in visuals if v[0] == kind]) for kind in token_ids}
        bos = self.tokenizer.bos_token
        first = not (bos and prompt.startswith(bos))  # BOS as the processor's tokenizer call adds it
        ids = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                if piece or first:
                    ids += self.tokenizer.encode(piece, add_special_tokens=first)
                first = False
                continue
            kind = "image" if piece == self.visual_token["image"] else "video"
            kind, count = next(in_order) if from_template else next(per_kind[kind])
            ids += [token_ids[kind]] * count
        return ids

    def render(self, read: list, template: str | None) -> tuple[str, bool]:
        """Turns with visuals as ("image" | "video", 1) parts -> the prompt text, and whether the
        preset's (or the named) Aurora template rendered it rather than the checkpoint's."""
        if template is None and self.chat_template:
            conversation = [{"role": role, "content": [{"type": kind, "text": value} if kind == "text" else {"type": kind}
                                                      for kind, value in parts]} for role, parts in read]
            final = read[-1][0] == "assistant"
            text = self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template, tokenize=False,
                                                      add_generation_prompt=not final, continue_final_message=final)
            return text, False
        chat = get_template(template) if template else self.template
        return chat.render(self.layout_turns(read, chat)), True

    # ---- answering and training -----------------------------------------------------------------

    def prepare(self, messages, num_frames=None, fps=None, token_kept_ratio=None, template=None):
        ratio = self.check_options(num_frames, token_kept_ratio)
        reply = Reply(text="", model=self.name, timings=dict.fromkeys(STAGES, 0.0))
        visuals: list[media.Frames] = []
        read = self.read_messages(messages, num_frames, fps, reply, lambda frames: visuals.append(frames) or 1)
        several = sum(f.is_image for f in visuals) > 1 and self.spec.single_tile_when_several_images
        features = []
        for frames in visuals:
            with _timed(reply.timings, "preprocess"):
                pixels, sizes = self.pixels(frames)
            with _timed(reply.timings, "encode"):
                tokens, counts = self.encode(pixels, sizes, ratio, single_tile=frames.is_image and several)
            features.append(tokens)
            reply.visual_tokens.append(counts)
            reply.visual_tokens_per_frame.append(tokens.shape[0])
        prompt, from_template = self.render(read, template)
        kinds = [("image" if f.is_image else "video", t.shape[0]) for f, t in zip(visuals, features)]
        ids = torch.tensor(self.prompt_ids(prompt, kinds, from_template), device=self.device)
        reply.prompt_tokens = len(ids)
        return {"inputs_embeds": self.embed(ids, features, kinds)}, reply

    def embed(self, ids: torch.Tensor, features: list[torch.Tensor], kinds: list[tuple[str, int]]) -> torch.Tensor:
        """(L,) ids -> (L, D) embeddings with each visual's features at its tokens (per kind, in order)."""
        embeds = self.model.get_input_embeddings()(ids)
        config = self.model.config
        for kind, token in (("image", config.image_token_id), ("video", config.video_token_id)):
            mine = [f for f, (k, _) in zip(features, kinds) if k == kind]
            if mine:
                where = (ids == token).nonzero()[:, 0]
                embeds = embeds.index_copy(0, where, torch.cat(mine).to(embeds.dtype))
        return embeds

    def collate(self, rows: list[dict]) -> dict:
        embeds, mask = pad([row["inputs_embeds"] for row in rows], side="left")
        return {"inputs_embeds": embeds.to(self.device), "attention_mask": mask.to(self.device)}

    def training_logits(self, samples, token_kept_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples split at one placeholder per visual -> (B, L, V) logits and (B, L) labels, each
        visual's tokens in its placeholder's place (no loss on them); the tower runs without grad."""
        rows, labels = [], []
        for sample in samples:
            frames = media.Frames(sample.frames, list(range(len(sample.frames))), [], len(sample.frames), None,
                                  None, "", len(sample.frames) == 1)
            tokens, _ = self.encode(*self.pixels(frames), token_kept_ratio)
            kind = "image" if frames.is_image else "video"
            token = getattr(self.model.config, f"{kind}_token_id")
            ids, lab = list(sample.segments[0]), list(sample.labels[0])
            features = []
            for segment, segment_labels in zip(sample.segments[1:], sample.labels[1:]):
                ids += [token] * tokens.shape[0] + segment
                lab += [IGNORE] * tokens.shape[0] + segment_labels
                features.append(tokens)
            ids = torch.tensor(ids, device=self.device)
            rows.append(self.embed(ids, features, [(kind, t.shape[0]) for t in features]))
            labels.append(torch.tensor(lab))
        embeds, mask = pad(rows, side="right")
        label_rows, _ = pad(labels, side="right", value=IGNORE)
        return self.model(inputs_embeds=embeds, attention_mask=mask.to(self.device)).logits, label_rows.to(self.device)


# ---- checkpoints ----------------------------------------------------------------------------------

def family(spec: Spec) -> Family:
    """The registry entry of a LLaVA-style family: its layout is its model_type."""

    def detect(path: Path, config: dict) -> str | None:
        return spec.model_type if config.get("model_type") == spec.model_type else None

    def load(path: Path, layout: str, dtype=torch.float32, trust_remote_code: bool = False) -> NativeLlava:
        import transformers

        model, tokenizer = open_checkpoint(path, spec.model_class, dtype, trust_remote_code)
        config = model.config
        for kind in ("image", "video"):
            token_id = getattr(config, f"{kind}_token_id")
            if token_id is None or token_id >= len(tokenizer):
                raise CheckpointError(f"{path}: the tokenizer lacks the {kind} token (id {token_id} in config.json)")
        processor_class = getattr(transformers, spec.image_processor)
        with quiet_transformers():
            image_processor = (processor_class.from_pretrained(path) if (path / "preprocessor_config.json").is_file()
                               else processor_class(**spec.default_image_processor(config)))
        # frames: the video processor's settings, else the image processor's (the tower was trained on those)
        video_processor = FrameProcessor.from_config(image_processor.to_dict(), FrameProcessor(size=config.vision_config.image_size))
        if (path / "video_preprocessor_config.json").is_file():
            video_processor = FrameProcessor.from_config(read_config(path, "video_preprocessor_config.json"), video_processor)
        preset = Preset.load(path, **spec.default_preset().to_dict())
        return NativeLlava(model, tokenizer, preset, spec, image_processor, video_processor, chat_template(path, tokenizer),
                           name=layout)

    def save(model: NativeLlava, out, layout: str | None = None) -> None:
        """transformers' own layout (what `from_pretrained` reads), with the processors' settings,
        the chat template and the preset."""
        video = {**model.video_processor.to_config(), "video_processor_type": spec.model_class.replace(
            "ForConditionalGeneration", "VideoProcessor")}
        configs = {"video_preprocessor_config.json": video}
        if model.chat_template and not model.tokenizer.chat_template:
            configs["chat_template.json"] = {"chat_template": model.chat_template}
        out = save_native(model, out, configs)
        with quiet_transformers():
            model.image_processor.save_pretrained(out)

    return Family(name=spec.family, layouts=(spec.model_type,), detect=detect, load=load, save=save,
                  build=NativeLlava, default_preset=spec.default_preset, kind="native")



