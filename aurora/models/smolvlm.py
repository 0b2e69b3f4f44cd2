"""SmolVLM2, run natively: transformers' own `SmolVLMForConditionalGeneration` (a SigLIP-shaped
tower, a pixel-shuffle connector, a Llama-style language model) with Aurora's media loader and
preprocessing in front.

Preprocessing without torchvision (its video processor needs it), with Pillow resizes on uint8
frames, rescaling and normalising as `SmolVLMImageProcessorPil` does (tested equal):
- a video frame: longest side to the video `size` (the other side by aspect ratio, rounded up to
  even), then squashed to the tower's square `max_image_size` — the PIL processor's math without
  image splitting. One line of difference: the video processor resamples with torchvision's
  filter, Aurora with Pillow's (Lanczos, the processor's `resample`).
- an image: longest side to `size`, both sides up to multiples of `max_image_size`, then cut into
  rows x cols squares plus the whole image squashed to one square (the "global" image), in the
  processor's order; an image no bigger than one square is that square alone.

The prompt is what SmolVLM's processor writes: the chat template (the checkpoint's own, as
transformers' processor uses it: its video default for conversations with a video, else the
tokenizer's or the processor's chat_template.json; transformers' default when the checkpoint has none) with each visual expanded — a
square is `<fake_token_around_image>` + (`<row_r_col_c>` for a crop | `<global-img>`) + one
`<image>` per token; a video is an intro (frame count in words, duration), then per frame
"\\nFrame from mm:ss:" and its square, then a blank line.

Token reduction at `token_kept_ratio` r < 1, per visual of B squares of n tokens each:
1. ToMe inside the tower (`aurora.vision.tower`, AuroraCap's r-per-layer rule at ratio r), which
   makes the tower cheaper; merged tokens go back on the patch grid (`merge.unmerge`, as PLLaVA
   composes ToMe with its pooling) so the pixel shuffle sees the grid it was trained on;
2. after the connector, exactly max(1, round(r * B * n)) of the B * n tokens reach the language
   model, chosen by `aurora.vision.temporal.keep_distinct` (a video: its first frame, then what
   changed since the previous frame; an image: its squares as one step, most distinct first).
With the reducer method "reuse" a video's tower skips what repeats instead of step 1
(`aurora.vision.reuse`, through `MergingVisionTower.forward_reused`): it computes frame 0 and the
r share of later patches whose pixels changed most since the previous frame, the rest reuse their
previous frame's states (the tower costs about (1 + r * (T - 1)) / T of the whole); the whole
patch grid then goes through the connector and step 2 as above. Images keep ToMe. The reply's
"encoder" count is the tokens the encoder computed (after ToMe, or the patches it ran).
The kept tokens keep their places among the prompt's text tokens (the dropped `<image>` tokens
are removed; a plain 1-D position sequence, as the language model uses). At 1.0 the model gets
transformers' own inputs (ids, pixels) unchanged.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aurora import media
from aurora.errors import CheckpointError, ConfigError
from aurora.generation import Generator
from aurora.models.registry import Family
from aurora.models.reply import Reply
from aurora.models.splice import pad
from aurora.models.native import NativeModel, chat_template, open_checkpoint, require_tokens, save_native
from aurora.models.video_llm import STAGES, _timed
from aurora.models.weights import read_config
from aurora.preset import Preset
from aurora.prompts import IGNORE, IMAGE_PLACEHOLDER, get_template
from aurora.vision.merge import unmerge
from aurora.vision.reduce import reuse_budget
from aurora.vision.reuse import fill
from aurora.vision.temporal import keep_distinct
from aurora.vision.tower import MergingVisionTower

MODEL_TYPES = {"smolvlm": "SmolVLMForConditionalGeneration"}
FAKE, GLOBAL, IMAGE = "<fake_token_around_image>", "<global-img>", "<image>"
VISUAL_TOKENS = (FAKE, GLOBAL, IMAGE)
MAX_SIDE = 4096  # the processor's cap on any resized side
# SmolVLM2's processor: a video's intro, each frame's time, the end of a visual
VIDEO_INTRO = "You are provided the following series of {count} frames from a {duration} [H:MM:SS] video.\n"
FRAME_TIME = "\nFrame from {minutes:02d}:{seconds:02d}:"
MEDIA_END = "\n\n"


# ---- preprocessing ------------------------------------------------------------------------------

def longest_edge_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """The processor's resize target: the longest side to `longest`, the other by the aspect ratio
    (truncated, then rounded up to even), no side over 4096."""
    aspect = width / height
    if width >= height:
        width, height = longest, int(longest / aspect)
        height += height % 2
    else:
        height, width = longest, int(longest * aspect)
        width += width % 2
    if width >= height and width > MAX_SIDE:
        width, height = MAX_SIDE, int(MAX_SIDE / aspect)
    elif height > width and height > MAX_SIDE:
        height, width = MAX_SIDE, int(MAX_SIDE * aspect)
    return max(height, 1), max(width, 1)


def _resize(frame: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 with Pillow (as the PIL processor resizes)."""
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling(resample)))


def normalise(squares: list[np.ndarray], rescale: float, mean, std) -> torch.Tensor:
    """(S, S, 3) uint8 squares -> (N, 3, S, S) float32, rescaled in float64 then normalised, as
    transformers' numpy transforms do."""
    x = (np.stack(squares).astype(np.float64) * rescale).astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def video_pixels(frames: np.ndarray, longest: int, side: int, resample: int = Image.LANCZOS,
                 rescale: float = 1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames -> (T, 3, side, side): each frame one square, never split."""
    squares = []
    for frame in frames:
        frame = _resize(frame, *longest_edge_size(*frame.shape[:2], longest), resample)
        squares.append(_resize(frame, side, side, resample))
    return normalise(squares, rescale, mean, std)


def image_pixels(image: np.ndarray, longest: int, side: int, split: bool = True, resample: int = Image.LANCZOS,
                 rescale: float = 1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """(H, W, 3) uint8 -> ((rows * cols [+ 1]), 3, side, side) squares, rows, cols (0, 0: not split)."""
    image = _resize(image, *longest_edge_size(*image.shape[:2], longest), resample)
    if not split:
        return normalise([_resize(image, side, side, resample)], rescale, mean, std), 0, 0
    height, width = image.shape[:2]
    aspect = width / height
    if width >= height:  # both sides up to multiples of `side` (the second from the first, as the processor)
        width = math.ceil(width / side) * side
        height = math.ceil(int(width / aspect) / side) * side
    else:
        height = math.ceil(height / side) * side
        width = math.ceil(int(height * aspect) / side) * side
    image = _resize(image, height, width, resample)
    if height <= side and width <= side:
        return normalise([image], rescale, mean, std), 0, 0
    rows, cols = height // side, width // side
    crops = [image[r * side:(r + 1) * side, c * side:(c + 1) * side] for r in range(rows) for c in range(cols)]
    return normalise(crops + [_resize(image, side, side, resample)], rescale, mean, std), rows, cols


# ---- prompt text --------------------------------------------------------------------------------

def square_text(tokens: int, tag: str = GLOBAL) -> str:
    return FAKE + tag + IMAGE * tokens


def image_text(rows: int, cols: int, tokens: int) -> str:
    """An image's tokens as SmolVLM's processor writes them (crops row by row, then the whole image)."""
    if rows == 0 and cols == 0:
        return square_text(tokens) + FAKE
    grid = "".join("".join(square_text(tokens, f"<row_{r + 1}_col_{c + 1}>") for c in range(cols)) + "\n"
                   for r in range(rows))
    return grid + "\n" + square_text(tokens) + FAKE


def video_text(timestamps: list[float], duration: float | None, tokens: int) -> str:
    """A video's text: the intro, then each frame's mm:ss and its tokens, then a blank line."""
    from num2words import num2words

    seconds = int(duration) if duration is not None else int(timestamps[-1])
    text = VIDEO_INTRO.format(count=num2words(len(timestamps)), duration=str(timedelta(seconds=seconds)))
    for t in timestamps:
        text += FRAME_TIME.format(minutes=int(t // 60), seconds=int(t % 60)) + square_text(tokens) + FAKE
    return text + MEDIA_END


def default_chat_template() -> str:
    """transformers' SmolVLM template for conversations with a video (its processor's default)."""
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

    return DEFAULT_CHAT_TEMPLATE


# ---- the model ----------------------------------------------------------------------------------

class SmolVLM(NativeModel):
    """transformers' SmolVLM answers; Aurora feeds it (and reduces its visual tokens)."""

    lora_within = "model.text_model"  # its SigLIP tower has q/v projections too: LoRA stays in the LM
    reductions = ("tome", "reuse")  # no merging across time

    def __init__(self, model, tokenizer, preset: Preset, processing: dict, name: str = "smolvlm"):
        super().__init__()
        self.model, self.tokenizer, self.preset, self.name = model, tokenizer, preset, name
        self.processing = processing  # sizes, resample, rescale, mean/std, image splitting
        self.template = get_template(preset.template.name)
        self.generator = Generator(model, tokenizer, self.template.stop, VISUAL_TOKENS, preset.generation.max_new_tokens)
        vision = model.config.vision_config
        self.tokens_per_square = (vision.image_size // vision.patch_size) ** 2 // model.config.scale_factor ** 2
        # the same tower run with ToMe (r < 1); kept outside the module tree: its layers are self.model's
        self.__dict__["tower"] = MergingVisionTower(model.model.vision_model, feature_layer=-1,
                                                    position_interpolation="transformers",
                                                    merge_schedule=preset.reducer.merge_schedule)

    # ---- one visual -----------------------------------------------------------------------------

    def visual_inputs(self, frames: media.Frames) -> tuple[str, torch.Tensor]:
        """A visual's prompt text and its (B, 3, S, S) squares."""
        p, n = self.processing, self.tokens_per_square
        numerics = dict(resample=p["resample"], rescale=p["rescale"], mean=p["mean"], std=p["std"])
        if frames.is_image:
            pixels, rows, cols = image_pixels(frames.array[0], p["longest"], p["side"], p["split"], **numerics)
            return image_text(rows, cols, n), pixels
        pixels = video_pixels(frames.array, p["video_longest"], p["side"], **numerics)
        return video_text(list(frames.timestamps), frames.duration, n), pixels

    def encode_reduced(self, pixels: torch.Tensor, ratio: float, is_image: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(B, 3, S, S) squares -> (B * n, D) connector outputs, the sorted indices of the kept ones,
        and the tokens the encoder computed (after ToMe; a video under "reuse": the patches it ran)."""
        core = self.model.model
        pixels = pixels.to(self.device, self.model.dtype)
        budget = None if is_image else reuse_budget(self.reduction, ratio)
        if budget is not None:  # frame 0 and the changed squares computed, the rest reused: (B, P, C) already
            scale = self.model.config.scale_factor
            out, squares = self.tower.forward_reused(pixels, budget, group=scale)  # a square: one shuffled token
            encoder = int(squares.computed.sum()) * scale**2
            shuffled = core.connector.pixel_shuffle(core.vision_model.post_layernorm(out.features), scale)  # (B, n, s²C)
            # the projection per token, on the computed squares only; a reused square's token is its source's
            features = fill(core.connector.modality_projection(shuffled[squares.computed]), squares)
        else:
            out = self.tower(pixels, ratio, track_source=True)
            grid, encoder = unmerge(out.features, out.source), out.features.shape[0] * out.features.shape[1]
            features = core.connector(core.vision_model.post_layernorm(grid))  # (B, n, D): pixel shuffle + projection
        blocks, n, dim = features.shape
        steps = features.reshape(1, blocks * n, dim) if is_image else features  # an image's squares: one step
        kept = keep_distinct(steps, round(ratio * blocks * n))
        return features.reshape(blocks * n, dim), kept, encoder

    # ---- answering ------------------------------------------------------------------------------

    def render(self, turns: list[tuple[str, str]], kinds: list[str], chat) -> str:
        """(role, text) turns with one placeholder per visual -> the prompt with a marker per visual
        (`<image>` / `<video>` from the chat template), ready to be expanded in order."""
        if chat is not self.template or turns[-1][0] not in ("user", "assistant"):
            return chat.render(turns)  # another template (a benchmark protocol's): Aurora's data
        messages, queue = [], list(kinds)
        for role, text in turns:
            content = []
            for i, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
                if i:
                    content.append({"type": queue.pop(0)})
                if piece:
                    content.append({"type": "text", "text": piece})
            messages.append({"role": role, "content": content})
        # the processor's rule: its own video template when a video is there, else the checkpoint's
        template = default_chat_template() if "video" in kinds or not self.tokenizer.chat_template else None
        continuing = turns[-1][0] == "assistant"  # a pre-filled answer is continued
        return self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=not continuing,
                                                  continue_final_message=continuing)

    def prepare(self, messages, num_frames=None, fps=None, token_kept_ratio=None, template=None):
        ratio = self.check_options(num_frames, token_kept_ratio)
        chat = get_template(template) if template else self.template
        timings = dict.fromkeys(STAGES, 0.0)
        reply, texts, pixels, kinds = Reply(text="", model=self.name, timings=timings), [], [], []
        features, keeps = [], []

        def read_visual(frames: media.Frames) -> int:
            with _timed(timings, "preprocess"):
                text, squares = self.visual_inputs(frames)
            texts.append(text)
            pixels.append(squares)
            kinds.append("image" if frames.is_image else "video")
            blocks, n = squares.shape[0], self.tokens_per_square
            side = squares.shape[-1] // self.tower.patch_size
            counts = {"patches": blocks * side * side, "encoder": blocks * side * side, "language_model": blocks * n}
            if ratio < 1:
                with _timed(timings, "encode"), torch.no_grad():
                    encoded, kept, encoder = self.encode_reduced(squares, ratio, frames.is_image)
                features.append(encoded)
                keeps.append(kept)
                counts.update(encoder=encoder, language_model=len(kept))
            reply.visual_tokens.append(counts)
            reply.visual_tokens_per_frame.append(round(counts["language_model"] / blocks))
            return 1  # one placeholder, expanded to the visual's text below

        turns = self.render_turns(messages, num_frames, fps, reply, chat, read_visual)
        pieces = re.split(f"({re.escape(IMAGE)}|<video>)", self.render(turns, kinds, chat))
        prompt, queue = pieces[0], iter(texts)
        for marker, after in zip(pieces[1::2], pieces[2::2]):
            prompt += next(queue, marker) + after
        ids = torch.tensor(self.tokenizer.encode(prompt, add_special_tokens=False))
        reply.prompt_tokens = len(ids)
        inputs = {"input_ids": ids, "pixel_values": torch.cat(pixels) if pixels else None}
        if ratio < 1 and pixels:
            inputs = self.reduce(ids, features, keeps)
            reply.prompt_tokens = inputs["inputs_embeds"].shape[0]
        return inputs, reply

    def reduce(self, ids: torch.Tensor, features: list[torch.Tensor], keeps: list[torch.Tensor]) -> dict:
        """One row's ids and each visual's (B * n, D) features with the kept indices -> the (L', D)
        embeddings of the text and the kept visual tokens, in prompt order."""
        ids = ids.to(self.device)
        embeds = self.model.get_input_embeddings()(ids)  # (L, D)
        slots = (ids == self.model.config.image_token_id).nonzero()[:, 0]  # every visual's tokens, in order
        keep, start = ids != self.model.config.image_token_id, 0
        for visual, kept in zip(features, keeps):
            here = slots[start:start + visual.shape[0]]
            embeds[here] = visual.to(embeds.dtype)
            keep[here[kept.to(self.device)]] = True
            start += visual.shape[0]
        return {"inputs_embeds": embeds[keep], "kept": keep.nonzero()[:, 0]}

    def collate(self, rows: list[dict]) -> dict:
        if "inputs_embeds" in rows[0]:  # reduced: embeddings of the text and the kept visual tokens
            embeds, mask = pad([row["inputs_embeds"] for row in rows], side="left")
            return {"inputs_embeds": embeds, "attention_mask": mask}
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = pad([row["input_ids"] for row in rows], side="left", value=pad_id)
        batch = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        squares = [row["pixel_values"] for row in rows]
        if any(s is not None for s in squares):  # (B, max squares, 3, S, S): all-zero squares are padding
            most = max(s.shape[0] for s in squares if s is not None)
            shape = next(s for s in squares if s is not None).shape[1:]
            values = torch.zeros(len(rows), most, *shape)
            for i, s in enumerate(squares):
                if s is not None:
                    values[i, :s.shape[0]] = s
            batch["pixel_values"] = values.to(self.device, self.model.dtype)
        return batch

    def training_logits(self, samples, token_kept_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples split at one placeholder per visual -> (B, L, V) logits and (B, L) labels, each
        visual's text (its `<image>` tokens) in the placeholder's place, with no loss on it."""
        if token_kept_ratio < 1:
            raise ConfigError("train SmolVLM at token_kept_ratio 1.0 (reduction is for inference)")
        rows, labels, pixels = [], [], []
        for sample in samples:
            count = len(sample.frames)
            frames = media.Frames(sample.frames, list(range(count)), [float(i) for i in range(count)], count,
                                  1.0, float(count), "", count == 1)
            text, squares = self.visual_inputs(frames)
            if not frames.is_image:  # the chat template puts a space after "User:" before a video
                text = " " + text
            vision = self.tokenizer.encode(text, add_special_tokens=False)
            ids, lab = list(sample.segments[0]), list(sample.labels[0])
            for segment, segment_labels in zip(sample.segments[1:], sample.labels[1:]):
                ids += vision + segment
                lab += [IGNORE] * len(vision) + segment_labels
            rows.append(torch.tensor(ids))
            labels.append(torch.tensor(lab))
            pixels.append(squares)
        batch = self.collate([{"input_ids": r, "pixel_values": p} for r, p in zip(rows, pixels)])
        ids, mask = pad(rows, side="right", value=self.tokenizer.pad_token_id or 0)  # training pads right
        label_rows, _ = pad(labels, side="right", value=IGNORE)
        batch.update(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return self.model(**batch).logits, label_rows.to(self.device)


# ---- the family ---------------------------------------------------------------------------------

def default_preset() -> Preset:
    """SmolVLM2's video settings: up to 64 frames (its processor's max_frames; Aurora samples them
    uniformly), its chat format, no reduction."""
    return Preset.of(family="smolvlm", num_frames=64, sampling="uniform", token_kept_ratio=1.0,
                     template={"name": "smolvlm", "layout": "video"}, max_new_tokens=512)


def detect(path: Path, config: dict) -> str | None:
    return config.get("model_type") if config.get("model_type") in MODEL_TYPES else None


def load(path: Path, layout: str, dtype=torch.float32, trust_remote_code: bool = False) -> SmolVLM:
    model, tokenizer = open_checkpoint(path, MODEL_TYPES[layout], dtype, trust_remote_code)
    require_tokens(path, tokenizer, VISUAL_TOKENS, "SmolVLM")
    tokenizer.chat_template = chat_template(path, tokenizer)  # the tokenizer's, else the processor's copy
    side = model.config.vision_config.image_size
    if (side // model.config.vision_config.patch_size) % model.config.scale_factor:
        raise CheckpointError(f"{path}: the tower's patch grid does not divide by scale_factor {model.config.scale_factor}")
    return SmolVLM(model, tokenizer, Preset.load(path, **default_preset().to_dict()), _processing(path, side), name=layout)


def _processing(path: Path, side: int) -> dict:
    """Sizes and numerics from the checkpoint's processor configs (SmolVLM's defaults otherwise)."""
    image = read_config(path, "preprocessor_config.json") if (path / "preprocessor_config.json").is_file() else {}
    video = read_config(path, "video_preprocessor_config.json") if (path / "video_preprocessor_config.json").is_file() else {}
    side = (image.get("max_image_size") or {}).get("longest_edge", side)
    longest = (image.get("size") or {}).get("longest_edge", 4 * side)
    video_size = video.get("size") or (video.get("video_sampling") or {}).get("video_size") or {}
    return {"side": side, "longest": longest, "video_longest": video_size.get("longest_edge", longest),
            "split": image.get("do_image_splitting", True), "resample": image.get("resample", Image.LANCZOS),
            "rescale": image.get("rescale_factor", 1 / 255), "mean": tuple(image.get("image_mean", (0.5,) * 3)),
            "std": tuple(image.get("image_std", (0.5,) * 3))}


def save(model: SmolVLM, out, layout: str | None = None) -> None:
    """transformers' own layout (what `from_pretrained` reads), with the processing sizes and the preset."""
    p = model.processing
    image = {"image_processor_type": "SmolVLMImageProcessor", "do_image_splitting": p["split"],
             "max_image_size": {"longest_edge": p["side"]}, "size": {"longest_edge": p["longest"]},
             "resample": int(p["resample"]), "rescale_factor": p["rescale"], "image_mean": list(p["mean"]),
             "image_std": list(p["std"])}
    video = {"video_processor_type": "SmolVLMVideoProcessor", "max_image_size": {"longest_edge": p["side"]},
             "size": {"longest_edge": p["video_longest"]}}
    save_native(model, out, {"preprocessor_config.json": image, "video_preprocessor_config.json": video})


FAMILY = Family(
    name="smolvlm",
    layouts=tuple(MODEL_TYPES),
    detect=detect,
    load=load,
    save=save,
    build=SmolVLM,
    default_preset=default_preset,
    kind="native",
)
