"""Qwen2-VL / Qwen2.5-VL, run natively: transformers' own `*ForConditionalGeneration` (its vision
transformer with 2-D rotary positions and patch merger, M-RoPE in the language model) with
Aurora's media loader and preprocessing in front.

Preprocessing without torchvision (every transformers video processor needs it): each frame is
resized with Pillow's bicubic filter to `smart_resize`'s size (a multiple of patch x merge, pixels
within [min_pixels, max_pixels], read from the checkpoint's preprocessor_config.json), rescaled and
normalised with the CLIP mean/std, then cut into (temporal 2 x 14 x 14) patches in the merger's
order: the math of `Qwen2VLImageProcessorPil` per image (tested equal) and of the video processor
for frame pairs (a short video's last frame repeated to pair it). One line of difference: the
video processor resizes with torchvision's bicubic, Aurora with Pillow's (as for images).

The prompt is ChatML with the visual as `<|vision_start|>` + one `<|video_pad|>` (or
`<|image_pad|>`) per merged token + `<|vision_end|>` before the text, as Qwen2-VL's chat template
writes it.

Token reduction happens after the merger (the tower runs whole): at `token_kept_ratio` r < 1 the
merged tokens of each visual are ranked by `aurora.vision.temporal.keep_distinct` (what changes
since the previous time step; the first step first), round(r * n) are kept, and the language model
gets the kept embeddings with exactly the M-RoPE positions they have in the unreduced prompt
(transformers' own `get_rope_index`), so time and place stay right. With the reducer method
"temporal" (or "both": the tower has no ToMe, so the same) tokens alike from one time step to the
next are merged instead (`merge_across_time`), each merged token at the position of its earliest
member. At 1.0 the model gets transformers' own inputs (ids, pixels) unchanged.

With the reducer method "reuse" a video of more than one time step does not run the tower whole:
`aurora.vision.qwen_reuse` computes step 0 and, of the later steps, the ratio's share of merge
units whose pixels changed most since the previous step (`reuse_budget`); the others are copies of
their source step's states, and the merger runs on the whole grid. Then round(r * n) tokens are
kept by `keep_distinct` as above (a reused unit's token repeats its source's, so it ranks last),
with their unreduced M-RoPE positions. `Reply.visual_tokens` then also says "encoder_computed": the
merged tokens whose merge units the tower computed (step 0's and the changed ones; "encoder" stays
the tokens it passes on, copies included). Images, single-step videos and ratio 1.0 run whole.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aurora import media
from aurora.errors import ConfigError
from aurora.generation import Generator
from aurora.models.registry import Family
from aurora.models.reply import Reply
from aurora.models.splice import pad
from aurora.models.native import NativeModel, open_checkpoint, require_tokens, save_native
from aurora.models.video_llm import STAGES, _timed
from aurora.models.weights import read_config
from aurora.preset import Preset
from aurora.prompts import IGNORE, IMAGE_PLACEHOLDER, get_template
from aurora.vision.preprocess import CLIP_MEAN, CLIP_STD
from aurora.vision.qwen_reuse import reused_features, unit_plan
from aurora.vision.reduce import METHODS, reuse_budget
from aurora.vision.temporal import keep_distinct, merge_across_time

MODEL_TYPES = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}
VISUAL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: sides multiples of `factor`, pixels in [min_pixels, max_pixels],
    the aspect ratio kept as closely as possible."""
    if max(height, width) / min(height, width) > 200:
        raise ConfigError(f"a {width}x{height} frame is too elongated for Qwen2-VL (aspect ratio over 200)")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def patches(frames: np.ndarray, patch: int = 14, merge: int = 2, temporal: int = 2, min_pixels: int = 56 * 56,
            max_pixels: int = 28 * 28 * 1280, mean=CLIP_MEAN, std=CLIP_STD) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(T, H, W, 3) uint8 frames -> (grid_t * grid_h * grid_w, 3 * temporal * patch * patch) patches
    and the (t, h, w) grid. One frame (an image) fills its temporal pair with itself."""
    height, width = frames.shape[1:3]
    h, w = smart_resize(height, width, patch * merge, min_pixels, max_pixels)
    resized = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])
    x = (resized.astype(np.float32) / 255.0 - np.array(mean, np.float32)) / np.array(std, np.float32)
    x = torch.from_numpy(x).permute(0, 3, 1, 2)  # (T, 3, h, w)
    if extra := -x.shape[0] % temporal:  # pair the last frame with itself
        x = torch.cat([x, x[-1:].expand(extra, -1, -1, -1)])
    t, gh, gw = x.shape[0] // temporal, h // patch, w // patch
    x = x.reshape(t, temporal, 3, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, gh/m, gw/m, m, m, C, temporal, p, p): the merger's order
    return x.reshape(t * gh * gw, 3 * temporal * patch * patch), (t, gh, gw)


def frame_interval(frames: media.Frames) -> float:
    """Seconds between the sampled frames (their mean spacing): Qwen2.5-VL's processor states it as
    temporal_patch_size / fps for frames sampled at `fps`."""
    times = np.asarray(frames.timestamps, dtype=np.float64)
    if len(times) > 1 and times[-1] > times[0]:
        return float(np.diff(times).mean())
    return 1.0 / (frames.fps or 2.0)


class Qwen2VL(NativeModel):
    """A native family's model: transformers' module answers; Aurora feeds it."""

    reductions = METHODS

    def __init__(self, model, tokenizer, preset: Preset, processing: dict, name: str = "qwen2-vl"):
        super().__init__()
        self.model, self.tokenizer, self.preset, self.name = model, tokenizer, preset, name
        self.processing = processing  # patch, merge, temporal, min/max pixels (images and videos)
        self.template = get_template(preset.template.name)
        self.generator = Generator(model, tokenizer, self.template.stop, VISUAL_TOKENS, preset.generation.max_new_tokens)

    def training_logits(self, samples, token_kept_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples split at one placeholder per visual -> (B, L, V) logits and (B, L) labels, with each
        visual's vision tokens in the placeholder's place (no loss on them)."""
        inputs, labels = self.training_inputs(samples, token_kept_ratio)
        return self.model(**inputs).logits, labels

    def training_inputs(self, samples, token_kept_ratio: float) -> tuple[dict, torch.Tensor]:
        """The model's inputs (ids, pixels, grids) for training samples, and their (B, L) labels."""
        if token_kept_ratio < 1:
            raise ConfigError("train Qwen2-VL at token_kept_ratio 1.0 (reduction is for inference)")
        config, rows, labels, visuals = self.model.config, [], [], {}
        for sample in samples:
            frames = media.Frames(sample.frames, list(range(len(sample.frames))), sample.timestamps or [],
                                  len(sample.frames), None, None, "", len(sample.frames) == 1)  # Qwen2.5-VL: real times
            text, visual = self.visual_inputs(frames)
            vision = self.tokenizer.encode(text, add_special_tokens=False)
            ids, lab = list(sample.segments[0]), list(sample.labels[0])
            for segment, segment_labels in zip(sample.segments[1:], sample.labels[1:]):
                ids += vision + segment
                lab += [IGNORE] * len(vision) + segment_labels
            rows.append(torch.tensor(ids))
            labels.append(torch.tensor(lab))
            for key, value in visual.items():
                visuals[key] = torch.cat([visuals[key], value]) if key in visuals else value
        ids, mask = pad(rows, side="right", value=self.tokenizer.pad_token_id or 0)
        label_rows, _ = pad(labels, side="right", value=IGNORE)
        types = (ids == config.image_token_id).long() + 2 * (ids == config.video_token_id).long()
        inputs = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types, **visuals}
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        return inputs, label_rows.to(self.device)

    def visual_inputs(self, frames: media.Frames) -> tuple[str, dict]:
        """The placeholder text and the model inputs of one visual."""
        kind = "image" if frames.is_image else "video"
        p = self.processing
        pixels, grid = patches(frames.array, p["patch"], p["merge"], p["temporal"], *p[kind])
        count = grid[0] * grid[1] * grid[2] // p["merge"] ** 2
        text = "<|vision_start|>" + f"<|{kind}_pad|>" * count + "<|vision_end|>"
        key = "pixel_values" if kind == "image" else "pixel_values_videos"
        inputs = {key: pixels, f"{kind}_grid_thw": torch.tensor([grid])}
        if kind == "video" and self.model.config.model_type == "qwen2_5_vl":  # M-RoPE time steps in real seconds
            inputs["second_per_grid_ts"] = torch.tensor([p["temporal"] * frame_interval(frames)])
        return text, inputs

    def prepare(self, messages, num_frames=None, fps=None, token_kept_ratio=None, template=None):
        ratio = self.check_options(num_frames, token_kept_ratio)
        budget = reuse_budget(self.reduction, ratio)
        chat = get_template(template) if template else self.template
        timings = dict.fromkeys(STAGES, 0.0)
        reply, inputs, visual_texts = Reply(text="", model=self.name, timings=timings), {}, []

        def read_visual(frames: media.Frames) -> int:
            with _timed(timings, "preprocess"):
                text, visual = self.visual_inputs(frames)
            visual_texts.append(text)
            for key, value in visual.items():
                inputs[key] = torch.cat([inputs[key], value]) if key in inputs else value
            merged = text.count("_pad|>")
            kept = merged if ratio == 1 else max(1, round(ratio * merged))
            reply.visual_tokens_per_frame.append(kept)
            t, h, w = next(v for k, v in visual.items() if k.endswith("grid_thw"))[0].tolist()
            counts = {"patches": t * h * w, "encoder": merged}
            if budget is not None and "pixel_values_videos" in visual and t > 1:  # merged tokens the tower computed
                units = unit_plan(visual["pixel_values_videos"], (t, h, w), self.processing["merge"], budget)
                counts["encoder_computed"] = sum(units.counts)
            reply.visual_tokens.append({**counts, "language_model": kept})
            return 1  # one placeholder, replaced by the visual's vision tokens below

        turns = self.render_turns(messages, num_frames, fps, reply, chat, read_visual)
        prompt = chat.render(turns)
        for text in visual_texts:  # each visual's placeholder becomes its vision tokens, in order
            prompt = prompt.replace(IMAGE_PLACEHOLDER, text, 1)
        ids = torch.tensor(self.tokenizer.encode(prompt, add_special_tokens=False))
        reply.prompt_tokens = len(ids)
        inputs["input_ids"] = ids
        # which tokens are image (1) or video (2) pads: without it transformers falls back to 1-D positions
        config = self.model.config
        inputs["mm_token_type_ids"] = (ids == config.image_token_id).long() + 2 * (ids == config.video_token_id).long()
        if ratio < 1:
            with _timed(timings, "encode"), torch.no_grad():
                inputs = self.reduce(inputs, ratio)
            reply.prompt_tokens = inputs["inputs_embeds"].shape[0]
        return inputs, reply

    def reduce(self, inputs: dict, ratio: float) -> dict:
        """One row's ids and pixels -> the kept (L', D) embeddings and their (3, L') M-RoPE positions."""
        embeds, keep = self.embed_visuals(inputs, ratio)
        return self.keep_tokens(inputs, embeds, keep)

    def keep_tokens(self, inputs: dict, embeds: torch.Tensor, keep: torch.Tensor) -> dict:
        """The kept rows of a prompt's (L, D) embeddings with their unreduced (3, L') M-RoPE positions."""
        ids, types = inputs["input_ids"].to(self.device), inputs["mm_token_type_ids"].to(self.device)
        extra = {"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}
        positions, _ = self.model.model.get_rope_index(ids[None], types[None], image_grid_thw=inputs.get("image_grid_thw"),
                                                       video_grid_thw=inputs.get("video_grid_thw"), **extra)  # (3, 1, L)
        kept = keep.nonzero()[:, 0]  # places in the unreduced prompt
        return {"inputs_embeds": embeds[kept], "position_ids": positions[:, 0, kept], "kept": kept}

    def embed_visuals(self, inputs: dict, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One row's ids and pixels -> its (L, D) layer-0 input (vision features in their places) and
        which tokens to keep at `ratio` (all text; per visual the most distinct of its tokens)."""
        core, config = self.model.model, self.model.config
        ids, types = inputs["input_ids"].to(self.device), inputs["mm_token_type_ids"].to(self.device)
        embeds = self.model.get_input_embeddings()(ids)  # (L, D)
        keep = types == 0
        budget = reuse_budget(self.reduction, ratio)
        for kind, token in (("image", config.image_token_id), ("video", config.video_token_id)):
            if f"{kind}_grid_thw" not in inputs:
                continue
            rows = inputs["pixel_values" if kind == "image" else "pixel_values_videos"].to(self.device)
            pixels, grids = rows.to(self.model.dtype), inputs[f"{kind}_grid_thw"].to(self.device)
            if kind == "video" and budget is not None:  # the tower skips what repeats, per video
                features = [self._video_features(video, grid, budget)
                            for video, grid in zip(rows.split(grids.prod(-1).tolist()), grids.tolist())]
            else:
                features = getattr(core, f"get_{kind}_features")(pixels, grids).pooler_output  # per visual (n_i, D)
            slots = (ids == token).nonzero()[:, 0]  # where each visual's tokens sit, in order
            start = 0
            for visual, (t, h, w) in zip(features, grids.tolist()):
                here = slots[start:start + visual.shape[0]]
                embeds[here] = visual.to(embeds.dtype)
                steps = visual.view(t, -1, visual.shape[-1])  # (t, h*w/merge^2, D)
                if self.reduction in ("tome", "reuse"):  # no in-encoder merging here: keep what changes
                    chosen = keep_distinct(steps, round(ratio * visual.shape[0]))
                else:  # merged across time; each merged token keeps its earliest member's M-RoPE position
                    merged = merge_across_time(steps, max(1, round(ratio * visual.shape[0])))
                    chosen = merged.first
                    embeds[here[chosen]] = merged.tokens.to(embeds.dtype)
                keep[here[chosen]] = True
                start += visual.shape[0]
        return embeds, keep

    def _video_features(self, rows: torch.Tensor, grid: list[int], budget: float) -> torch.Tensor:
        """One video's (t*h*w, P) pixel rows -> its (n, D) merged tokens: the tower under reuse at
        `budget` (`aurora.vision.qwen_reuse`), or run whole for a single time step. The plan is made
        on the preprocessed pixels (as `prepare` counts it), before they take the model's dtype."""
        core, pixels = self.model.model, rows.to(self.model.dtype)
        visual = core.visual
        if grid[0] == 1:
            return core.get_video_features(pixels, torch.tensor([grid], device=rows.device)).pooler_output[0]
        units = unit_plan(rows, tuple(grid), visual.spatial_merge_size, budget)
        return reused_features(visual, pixels, tuple(grid), units)

    def collate(self, rows: list[dict]) -> dict:
        if "inputs_embeds" in rows[0]:  # reduced: embeddings with their own M-RoPE positions
            embeds, mask = pad([row["inputs_embeds"] for row in rows], side="left")
            positions, _ = pad([row["position_ids"].T for row in rows], side="left")  # (B, L, 3)
            return {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions.permute(2, 0, 1)}

        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = pad([row["input_ids"] for row in rows], side="left", value=pad_id)
        types, _ = pad([row["mm_token_type_ids"] for row in rows], side="left", value=0)
        batch = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                 "mm_token_type_ids": types.to(self.device)}
        for key in {k for row in rows for k in row if k not in batch}:
            value = torch.cat([row[key] for row in rows if key in row]).to(self.device)
            batch[key] = value.to(self.model.dtype) if value.is_floating_point() else value
        return batch


def default_preset() -> Preset:
    return Preset.of(family="qwen2_vl", num_frames=8, sampling="uniform", token_kept_ratio=1.0,
                     template={"name": "qwen2_vl", "layout": "video"}, max_new_tokens=512)


def detect(path: Path, config: dict) -> str | None:
    return config.get("model_type") if config.get("model_type") in MODEL_TYPES else None


def load(path: Path, layout: str, dtype=torch.float32, trust_remote_code: bool = False) -> Qwen2VL:
    model, tokenizer = open_checkpoint(path, MODEL_TYPES[layout], dtype, trust_remote_code)
    require_tokens(path, tokenizer, VISUAL_TOKENS, "Qwen2-VL")
    return Qwen2VL(model, tokenizer, Preset.load(path, **default_preset().to_dict()), _processing(path), name=layout)


def _processing(path: Path) -> dict:
    """Patch sizes and pixel bounds from the checkpoint's processor configs (Qwen2-VL's defaults otherwise)."""
    image = read_config(path, "preprocessor_config.json") if (path / "preprocessor_config.json").is_file() else {}
    video = read_config(path, "video_preprocessor_config.json") if (path / "video_preprocessor_config.json").is_file() else {}

    def bounds(config: dict, low: int, high: int) -> tuple[int, int]:
        size = config.get("size") or {}
        return (config.get("min_pixels") or size.get("shortest_edge") or low,
                config.get("max_pixels") or size.get("longest_edge") or high)

    return {"patch": image.get("patch_size", 14), "merge": image.get("merge_size", 2),
            "temporal": image.get("temporal_patch_size", 2), "image": bounds(image, 56 * 56, 28 * 28 * 1280),
            "video": bounds(video, 128 * 28 * 28, 28 * 28 * 768)}


def processor_configs(model: Qwen2VL) -> dict[str, dict]:
    """The processing sizes as transformers' processors read them back."""
    p = model.processing
    return {"preprocessor_config.json": {"patch_size": p["patch"], "merge_size": p["merge"],
                                         "temporal_patch_size": p["temporal"], "min_pixels": p["image"][0],
                                         "max_pixels": p["image"][1]},
            "video_preprocessor_config.json": {"min_pixels": p["video"][0], "max_pixels": p["video"][1]}}


def save(model: Qwen2VL, out, layout: str | None = None) -> None:
    """transformers' own layout (what `from_pretrained` reads), with the processing sizes and the preset."""
    save_native(model, out, processor_configs(model))


FAMILY = Family(
    name="qwen2_vl",
    layouts=tuple(MODEL_TYPES),
    detect=detect,
    load=load,
    save=save,
    build=Qwen2VL,
    default_preset=default_preset,
    kind="native",
)
