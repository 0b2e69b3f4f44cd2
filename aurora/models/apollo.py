"""Apollo (Apollo-LMMs/Apollo), run from its published checkpoints without their remote code.

A video is read as clips (`aurora.media.load_clips`: `clip_duration` seconds, 4 frames each, as many
as the context allows at the published clip_sampling_ratio 0.65). Each clip goes through two towers:
SigLIP per frame (transformers' `SiglipVisionModel`, run by Aurora's ToMe tower so merging is an
option) and InternVideo2 per clip (`aurora.vision.internvideo2`); both give their hidden states at
`mm_vision_select_layer` (InternVideo2 without CLS) on a (T, h, w) grid, resized trilinearly to the
largest grid, concatenated on channels and flattened; the connector (projection + Perceiver
resampler, `aurora.connectors.resampler`) turns each clip into `num_output_tokens` tokens. The
Qwen2 language model reads them inside Apollo's timed prompt (`aurora.prompts.clips_text`, one
placeholder per clip) in Apollo's ChatML.

Preprocessing follows Apollo's: every frame is padded to a centred square with the tower's mean
colour, then SigLIP resizes bicubically (Pillow, its image processor's math) and InternVideo2
bilinearly (torch, half-pixel centres, no antialias: OpenCV's INTER_LINEAR) with ImageNet mean/std.

Layout read and written ("apollo"): `config.json` with `llm_cfg`, `vision_tower_cfg`,
`mm_connector_cfg`, `clip_duration`, `mm_vision_select_layer`; `llm/` (a transformers causal LM and
its tokenizer), `vision_tower/config.json` (`vision_towers`: the subfolder names) with
`vision_tower/<tower>/`, and `mm_connector/` (config.json + weights). Every part loads strictly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from aurora import media
from aurora.connectors import build_connector
from aurora.errors import AuroraWarning, CheckpointError, ConfigError
from aurora.generation import Generator
from aurora.models.registry import Family
from aurora.models.reply import Reply
from aurora.models.splice import pad, splice
from aurora.models.video_llm import STAGES, ChatModel, _timed
from aurora.models.weights import from_pretrained, load_strict, load_tokenizer, read_config, read_weights, write_weights
from aurora.preset import Preset
from aurora.prompts import IMAGE_PLACEHOLDER, clips_text, get_template, segment
from aurora.vision.internvideo2 import InternVideo2, InternVideo2Config
from aurora.vision.merge import unmerge
from aurora.vision.reduce import MERGES, split_ratio
from aurora.vision.temporal import merge_across_time
from aurora.vision.tower import MergingVisionTower

FRAMES_PER_CLIP = 4  # Apollo's README and demo
CLIP_SAMPLING_RATIO = 0.65
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ENCODE_CLIPS = 16  # clips per tower batch: memory follows this, not the video's length


def default_preset() -> Preset:
    return Preset.of(family="apollo", token_kept_ratio=1.0, template={"name": "apollo", "layout": "clips"},
                     max_new_tokens=256)


# ---- the towers -----------------------------------------------------------------------------------


def square(frames: np.ndarray, mean) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, S, S, 3), centred on a square of the tower's mean colour (Apollo's
    pad_to_center_square, the colour int(mean x 255))."""
    t, h, w, _ = frames.shape
    side = max(h, w)
    out = np.empty((t, side, side, 3), dtype=frames.dtype)
    out[:] = np.array([int(m * 255) for m in mean], dtype=frames.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[:, top:top + h, left:left + w] = frames
    return out


class SiglipClipTower(nn.Module):
    """SigLIP per frame: (B, T, 3, S, S) clips -> (B, T, h, w, D); all tokens (Apollo's "cls_patch"
    on a tower without CLS). ToMe at token_kept_ratio < 1 speeds the tower; the merged tokens are
    put back on the grid (`merge.unmerge`) because Apollo's resize needs it."""

    def __init__(self, model, select_layer: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        super().__init__()
        self.tower = MergingVisionTower(model, feature_layer=select_layer, position_interpolation="transformers")
        self.mean, self.std = tuple(mean), tuple(std)
        self.image_size = model.config.image_size
        side = self.image_size // model.config.patch_size
        self.grid = (1, side, side)  # time: one frame at a time
        self.hidden_size = model.config.hidden_size

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 3, S, S): square, Pillow bicubic, rescale, normalise."""
        size = self.image_size
        resized = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC))
                            for f in square(frames, self.mean)])
        x = (resized.astype(np.float32) / 255.0 - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return torch.from_numpy(x).permute(0, 3, 1, 2)

    def forward(self, clips: torch.Tensor, out_frames: int, token_kept_ratio: float = 1.0) -> tuple[torch.Tensor, int]:
        """-> (B, T, h, w, D) features and the tokens the tower passed on (after ToMe)."""
        b, t = clips.shape[:2]
        clips = clips[:, :: max(1, t // out_frames)]  # Apollo strides frames down to the common T
        t = clips.shape[1]
        out = self.tower(clips.flatten(0, 1), token_kept_ratio, track_source=token_kept_ratio < 1)
        features = unmerge(out.features, out.source) if out.source is not None else out.features  # (B T, h w, D)
        kept = out.features.shape[0] * out.features.shape[1]
        return features.reshape(b, t, self.grid[1], self.grid[2], -1), kept


class InternVideo2ClipTower(nn.Module):
    """InternVideo2 per clip: (B, T, 3, S, S) -> (B, T', h, w, D), CLS dropped."""

    def __init__(self, model: InternVideo2, select_layer: int):
        super().__init__()
        self.model, self.select_layer = model, select_layer
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.image_size = model.config.img_size
        self.grid = model.config.grid
        self.hidden_size = model.config.d_model

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(square(frames, self.mean)).permute(0, 3, 1, 2).float()  # (T, 3, S0, S0)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255) / 255.0  # OpenCV resizes uint8 to uint8
        return (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)

    def forward(self, clips: torch.Tensor, out_frames: int, token_kept_ratio: float = 1.0) -> tuple[torch.Tensor, int]:
        """-> (B, T', h, w, D) features and their token count (no reduction in this tower)."""
        x = self.model(clips.transpose(1, 2), self.select_layer)[:, 1:]  # (B, T' h w, D)
        return x.reshape(x.shape[0], *self.grid, -1), x.shape[0] * x.shape[1]


class ApolloVision(nn.Module):
    """Apollo's towers together: per clip, each tower's grid resized trilinearly to the largest
    (T, h, w), concatenated on channels (in `names` order) and flattened -> (B, T h w, sum D)."""

    def __init__(self, towers: dict[str, nn.Module]):
        super().__init__()
        self.towers = nn.ModuleDict(towers)
        self.names = list(towers)
        self.grid = tuple(max(tower.grid[i] for tower in self.towers.values()) for i in range(3))
        self.hidden_size = sum(tower.hidden_size for tower in self.towers.values())

    def preprocess(self, frames: np.ndarray) -> list[torch.Tensor]:
        return [tower.preprocess(frames) for tower in self.towers.values()]  # per tower (N, 3, S, S)

    def forward(self, pixels: list[torch.Tensor], token_kept_ratio: float = 1.0, counts: bool = False):
        """Per tower (B, T, 3, S, S) clips -> (B, T h w, sum D); with counts=True also the towers'
        {"patches", "encoder"} token counts (patches in, tokens passed on after ToMe)."""
        features, tally = [], {"patches": 0, "encoder": 0}
        for tower, clips in zip(self.towers.values(), pixels):
            x, kept = tower(clips, self.grid[0], token_kept_ratio)  # (B, t, h, w, D)
            tally["patches"] += x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3]
            tally["encoder"] += kept
            if tuple(x.shape[1:4]) != self.grid:
                x = F.interpolate(x.permute(0, 4, 1, 2, 3).float(), size=self.grid, mode="trilinear",
                                  align_corners=False).to(x.dtype).permute(0, 2, 3, 4, 1)
            features.append(x)
        features = torch.cat(features, dim=-1).flatten(1, 3)
        return (features, tally) if counts else features


# ---- the model ------------------------------------------------------------------------------------


class Apollo(ChatModel):
    reductions = MERGES

    def __init__(self, vision: ApolloVision, connector: nn.Module, language_model: nn.Module, tokenizer, preset: Preset,
                 clip_duration: float, model_max_length: int, frames_per_clip: int = FRAMES_PER_CLIP,
                 clip_sampling_ratio: float = CLIP_SAMPLING_RATIO, select_layer: int = -2, name: str = "apollo"):
        super().__init__()
        self.vision, self.connector, self.language_model = vision, connector, language_model
        self.tokenizer, self.preset, self.name = tokenizer, preset, name
        self.clip_duration, self.model_max_length = clip_duration, model_max_length
        self.frames_per_clip, self.clip_sampling_ratio, self.select_layer = frames_per_clip, clip_sampling_ratio, select_layer
        self.template = get_template(preset.template.name)
        self.generator = Generator(language_model, tokenizer, self.template.stop, (IMAGE_PLACEHOLDER,),
                                   preset.generation.max_new_tokens)

    @property
    def tokens_per_clip(self) -> int:
        return self.connector.num_output_tokens

    @property
    def decode_size(self) -> int:
        return max(tower.image_size for tower in self.vision.towers.values())

    def load_frames(self, visual, num_frames=None, fps=None) -> media.Frames:
        """A video as Apollo's clips; num_frames / fps do not apply (the clip rule decides)."""
        if isinstance(visual, media.Frames):
            return visual
        return media.load_clips(str(visual), self.clip_duration, self.frames_per_clip, self.tokens_per_clip,
                                self.model_max_length, self.clip_sampling_ratio, size=self.decode_size)

    def encode(self, frames: media.Frames, token_kept_ratio: float = 1.0) -> torch.Tensor:
        """A clip-sampled video -> (num_clips, num_output_tokens, D) blocks."""
        return self.encode_counted(frames, token_kept_ratio)[0]

    def encode_counted(self, frames: media.Frames, token_kept_ratio: float = 1.0) -> tuple[torch.Tensor, dict]:
        """`encode`, and the visual tokens after each stage: the towers' patches, what they pass on
        (SigLIP's after ToMe), what reaches the language model. ENCODE_CLIPS clips are preprocessed
        and encoded at a time, so memory follows that, not the video's length."""
        if not frames.clips:
            raise ConfigError("Apollo reads videos as clips: load them with media.load_clips (model.load_frames)")
        n, per_clip = len(frames.clips), self.frames_per_clip
        if frames.array.shape[0] != n * per_clip:
            raise ConfigError(f"{frames.array.shape[0]} frames for {n} clips of {per_clip}")
        dtype = next(self.connector.parameters()).dtype
        tower_ratio, temporal = split_ratio(self.reduction, token_kept_ratio)
        blocks, counts = [], {"patches": 0, "encoder": 0}
        for start in range(0, n, ENCODE_CLIPS):
            part = frames.array[start * per_clip:(start + ENCODE_CLIPS) * per_clip]
            clips = [p.view(-1, per_clip, *p.shape[1:]).to(self.device, dtype) for p in self.vision.preprocess(part)]
            features, part_counts = self.vision(clips, tower_ratio, counts=True)
            blocks.append(self.connector(features))
            counts = {k: counts[k] + part_counts[k] for k in counts}
        blocks = torch.cat(blocks)
        if temporal is not None:  # the reducer method merges across time: clip to clip, per-clip blocks of any length
            merged = merge_across_time(blocks, max(1, round(temporal * blocks.shape[0] * blocks.shape[1])))
            per_clip = torch.bincount(merged.frames(blocks.shape[1]), minlength=blocks.shape[0])
            blocks = list(merged.tokens.split(per_clip.tolist()))
        return blocks, {**counts, "language_model": sum(block.shape[0] for block in blocks)}

    def visual_text(self, frames: media.Frames) -> str:
        """Apollo's timed text for a clip-sampled video (its length: frame count over average rate)."""
        return clips_text(frames.clips, frames.total_frames / frames.fps, self.clip_duration)

    def embed_prompt(self, prompt: str, blocks: list[torch.Tensor]) -> torch.Tensor:
        segments, labels = segment([(prompt, False)], self.tokenizer)
        embeds, _ = splice(segments, labels, [b for visual in blocks for b in visual],
                           self.language_model.get_input_embeddings())
        return embeds[None]

    def prepare(self, messages, num_frames=None, fps=None, token_kept_ratio=None, template=None):
        ratio = self.check_options(num_frames, token_kept_ratio)
        if fps is not None or num_frames not in (None, self.preset.media.num_frames):
            warnings.warn(f"Apollo samples clips by its published rule ({self.frames_per_clip} frames per "
                          f"{self.clip_duration} s clip): --num-frames / --fps are not used", AuroraWarning, stacklevel=2)
        chat = get_template(template) if template else self.template
        reply = Reply(text="", model=self.name, timings=dict.fromkeys(STAGES, 0.0))
        encoded = []

        def encode_visual(frames: media.Frames) -> str:
            with _timed(reply.timings, "encode"):
                blocks, counts = self.encode_counted(frames, ratio)
            encoded.append(blocks)
            reply.clips.append([[round(s, 6), round(e, 6)] for s, e in frames.clips])
            reply.visual_tokens_per_frame.append(round(counts["language_model"] / len(blocks)))  # tokens per clip
            reply.visual_tokens.append(counts)
            return self.visual_text(frames)

        turns = self.render_turns(messages, num_frames, fps, reply, chat, encode_visual)
        inputs_embeds = self.embed_prompt(chat.render(turns), encoded)
        reply.prompt_tokens = inputs_embeds.shape[1]
        return inputs_embeds, reply

    def training_logits(self, samples, token_kept_ratio: float):
        raise ConfigError("training Apollo is not implemented yet (its clip data path): it runs, serves and evaluates")

    def collate(self, rows: list[torch.Tensor]) -> dict:
        embeds, mask = pad([row[0] for row in rows], side="left")
        return {"inputs_embeds": embeds, "attention_mask": mask}


# ---- checkpoints ----------------------------------------------------------------------------------


def detect(path: Path, config: dict) -> str | None:
    if config.get("model_type") == "apollo" or all(k in config for k in ("llm_cfg", "vision_tower_cfg", "mm_connector_cfg")):
        return "apollo"
    return None


def load_tower(directory: Path, name: str, select_layer: int, dtype) -> nn.Module:
    """One of Apollo's towers by its folder name, as Apollo chooses it ("internvideo" / "siglip" in the name)."""
    if "internvideo" in name.lower():
        model = InternVideo2(InternVideo2Config.from_dict(read_config(directory)))
        model.load_published(read_weights(directory), directory)
        return InternVideo2ClipTower(model.to(dtype).eval(), select_layer)
    if "siglip" in name.lower():
        from transformers import SiglipVisionModel

        processor = _json(directory / "preprocessor_config.json")
        return SiglipClipTower(from_pretrained(SiglipVisionModel, directory, dtype=dtype), select_layer,
                               processor.get("image_mean", (0.5,) * 3), processor.get("image_std", (0.5,) * 3))
    raise CheckpointError(f"Aurora implements Apollo's SigLIP and InternVideo2 towers, not {name!r} ({directory})")


def load(path: Path, layout: str = "apollo", dtype=torch.float32, trust_remote_code: bool = False) -> Apollo:
    from transformers import AutoModelForCausalLM

    config = read_config(path)
    if config.get("use_mm_start_end"):
        raise CheckpointError(f"{path}: Aurora does not implement Apollo's use_mm_start_end (start/end tokens around visuals)")
    if config.get("mm_vision_select_feature", "patch") != "patch":
        raise CheckpointError(f"{path}: Aurora implements mm_vision_select_feature 'patch', not {config['mm_vision_select_feature']!r}")
    for part in ("llm", "vision_tower", "mm_connector"):
        if not (path / part).is_dir():
            raise CheckpointError(f"checkpoint {path} has an Apollo config.json but lacks {part}/")
    select_layer = config.get("mm_vision_select_layer", -2)
    language_model = from_pretrained(AutoModelForCausalLM, path / "llm", dtype=dtype)
    tokenizer = load_tokenizer(path / "llm", trust_remote_code)
    names = (config.get("vision_tower_cfg") or {}).get("vision_towers") or read_config(path / "vision_tower").get("vision_towers")
    if not names:
        raise CheckpointError(f"{path}: vision_tower_cfg names no vision_towers")
    vision = ApolloVision({name: load_tower(path / "vision_tower" / name, name, select_layer, dtype) for name in names})
    connector = build_connector(read_config(path / "mm_connector"))
    load_strict(connector, read_weights(path / "mm_connector"), path / "mm_connector")
    if sum(_widths(connector)) != vision.hidden_size:
        raise CheckpointError(f"{path}: the connector takes {sum(_widths(connector))} channels, the towers give {vision.hidden_size}")
    llm_cfg = config.get("llm_cfg") or {}
    max_length = config.get("model_max_length") or llm_cfg.get("model_max_length")
    if not max_length or "clip_duration" not in config:
        raise CheckpointError(f"{path}/config.json lacks {'clip_duration' if max_length else 'model_max_length'}")
    preset = Preset.load(path, **default_preset().to_dict())
    return build(vision, connector.to(dtype).eval(), language_model, tokenizer, preset,
                 clip_duration=config["clip_duration"], model_max_length=max_length, select_layer=select_layer)


def build(vision, connector, language_model, tokenizer, preset, **settings) -> Apollo:
    return Apollo(vision, connector, language_model, tokenizer, preset, **settings)


def save(model: Apollo, out: str | Path, layout: str = "apollo") -> None:
    """The published layout (see the module), plus aurora_preset.json."""
    if layout != "apollo":
        raise ConfigError(f"Apollo writes the layout 'apollo', not {layout!r}")
    out = Path(out)
    model.language_model.save_pretrained(out / "llm")
    model.tokenizer.save_pretrained(out / "llm")
    llm_cfg = {**model.language_model.config.to_dict(), "model_max_length": model.model_max_length}
    for name, tower in model.vision.towers.items():
        folder = out / "vision_tower" / name
        if isinstance(tower, InternVideo2ClipTower):
            write_weights(tower.model.state_dict(), folder)
            (folder / "config.json").write_text(json.dumps(tower.model.config.to_dict(), indent=2) + "\n")
        else:
            tower.tower.model.save_pretrained(folder)
            processor = {"image_mean": list(tower.mean), "image_std": list(tower.std),
                         "size": {"height": tower.image_size, "width": tower.image_size}}
            (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    vision_cfg = {"vision_towers": model.vision.names}
    (out / "vision_tower" / "config.json").write_text(json.dumps(vision_cfg, indent=2) + "\n")
    write_weights(model.connector.state_dict(), out / "mm_connector")
    connector_cfg = model.connector.to_config()
    (out / "mm_connector" / "config.json").write_text(json.dumps(connector_cfg, indent=2) + "\n")
    config = {"model_type": "apollo", "architectures": ["ApolloForCausalLM"], "llm_cfg": llm_cfg,
              "vision_tower_cfg": vision_cfg, "mm_connector_cfg": connector_cfg, "clip_duration": model.clip_duration,
              "mm_vision_select_layer": model.select_layer, "mm_vision_select_feature": "patch",
              "use_mm_start_end": False, "model_max_length": model.model_max_length}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model.preset.save(out)


def _widths(connector) -> list[int]:
    widths = connector.config["vision_hidden_size"]
    return widths if isinstance(widths, list) else [widths]


def _json(path: Path) -> dict:
    return read_config(path.parent, path.name) if path.is_file() else {}


FAMILY = Family(name="apollo", layouts=("apollo",), detect=detect, load=load, save=save, build=build,
                default_preset=default_preset)
