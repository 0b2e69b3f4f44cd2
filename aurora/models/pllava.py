"""PLLaVA (magic-research/PLLaVA): an image LLaVA-NeXT turned into a video model by pooling.

Parts: the base's CLIP ViT-L/14-336 (second-to-last layer, CLS dropped: a 24x24 grid per frame),
its projector applied per frame, then `AdaptiveAvgPool3d` over the video's (T, 24, 24) grid to
`pooling_shape` ((16, 12, 12) in the published runs: 2,304 tokens) — the whole video behind one
`<image>` — and the base's language model with LoRA on q_proj / v_proj (rank 128).

Layouts read:
- "llava-next": a llava-hf LLaVA-NeXT base (`LlavaNextForConditionalGeneration`, e.g.
  llava-hf/llava-v1.6-vicuna-7b-hf); PLLaVA's published weights (only `lora_` and
  `multi_modal_projector` keys) come on top with `--adapter WEIGHTS_DIR`, whose config.json gives
  pooling_shape and num_frames; or that folder alone when its config.json has "base_model".
- "xtuner": a whole PLLaVA model written by Aurora (LoRA merged; `aurora_preset.json` names the family).
Layouts written: "xtuner" (what training exports) and "pllava-weights" (PLLaVA's own: LoRA +
projector keys and its config fields; training writes it too when it trained LoRA).

Flash-attention is never required (PLLaVA's code hard-codes it). The LoRA scaling defaults to
the published evaluation scripts' alpha 4 (training used 32): `--lora-alpha` changes it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import torch
from transformers import LlavaNextForConditionalGeneration

from aurora.connectors.pool import PooledConnector
from aurora.errors import CheckpointError, ConfigError
from aurora.models import auroracap
from aurora.models.auroracap import build as compose
from aurora.models.auroracap import llava_parts
from aurora.models.registry import Family
from aurora.models.video_llm import VideoLLM
from aurora.models.weights import from_pretrained, load_strict, load_tokenizer, read_config
from aurora.preset import Preset

POOLING_SHAPE = (16, 12, 12)
LORA_RANK, LORA_TARGETS = 128, ("q_proj", "v_proj")
LORA_ALPHA = 4  # the published evaluation and demo scripts' value (training: 32)


def default_preset() -> Preset:
    """PLLaVA's evaluation settings: 16 segment-middle frames at 336 px, the plain template."""
    return Preset.of(family="pllava", num_frames=16, sampling="middle", image_size=336, feature_layer=-2,
                     resize="shortest_edge_crop", position_interpolation="transformers", token_kept_ratio=1.0,
                     template={"name": "pllava", "layout": "video"}, max_new_tokens=200)


def detect(path: Path, config: dict) -> str | None:
    if (path / "visual_encoder").is_dir():  # a whole PLLaVA model written by Aurora (its preset names the family)
        return auroracap.detect(path, config)
    if config.get("model_type") == "llava" and "pooling_shape" in config:  # PLLaVA's own weights folder
        if config.get("base_model"):
            return "pllava-weights"  # it names its base: loadable on its own
        raise CheckpointError(f"{path} holds PLLaVA's weights (LoRA + projector), not a whole model: pass its "
                              "LLaVA-NeXT base as --model and this folder as --adapter (or add \"base_model\": "
                              "\"BASE_DIR_OR_HUB_ID\" to its config.json)")
    return "llava-next" if config.get("model_type") == "llava_next" else None


def load(path: Path, layout: str, dtype=torch.float32, trust_remote_code: bool = False, build=compose) -> VideoLLM:
    if layout == "xtuner":
        return auroracap.load_xtuner(path, dtype=dtype, trust_remote_code=trust_remote_code, build=build)
    if layout == "pllava-weights":  # PLLaVA's weights whose config.json names the base
        from aurora.models import resolve

        base_path = resolve(read_config(path)["base_model"])
        model = load(base_path, "llava-next", dtype=dtype, trust_remote_code=trust_remote_code, build=build)
        attach_adapter(model, path)
        return model
    base = from_pretrained(LlavaNextForConditionalGeneration, path, dtype=dtype)
    config = base.config
    if config.vision_feature_select_strategy != "default":
        raise CheckpointError(f"{path}: PLLaVA drops CLS (vision_feature_select_strategy 'default'), "
                              f"not {config.vision_feature_select_strategy!r}")
    vision, projector, language_model = llava_parts(base, dtype)
    defaults = default_preset().to_dict()
    defaults["vision"]["image_size"] = config.vision_config.image_size
    preset = Preset.load(path, **defaults)
    connector = PooledConnector(projector, POOLING_SHAPE, preset.media.num_frames)
    return build(vision, connector, language_model, load_tokenizer(path, trust_remote_code), preset)


def attach_adapter(model: VideoLLM, directory: Path, lora_alpha: float | None = None) -> None:
    """PLLaVA's weights directory onto a loaded base: LoRA into the language model, the projector's
    weights into the connector (strict), pooling_shape / num_frames from its config.json."""
    from aurora.adapters.lora import detect_layout, load_lora

    settings = read_config(directory) if (directory / "config.json").is_file() else {}
    if detect_layout(directory) == "pllava":
        lm, extra = load_lora(model.language_model, directory, rank=_rank(directory), targets=LORA_TARGETS,
                              lora_alpha=LORA_ALPHA if lora_alpha is None else lora_alpha)
    else:
        lm, extra = load_lora(model.language_model, directory, lora_alpha=lora_alpha)
    model.language_model = lm
    prefix = "multi_modal_projector."
    if extra:
        unexpected = sorted(k for k in extra if not k.startswith(prefix))
        if unexpected:
            raise CheckpointError(f"{directory}: unexpected weights {unexpected[:3]} (PLLaVA's hold LoRA and projector keys)")
        names = {"linear_1": "model.0", "linear_2": "model.2"}
        state = {}
        for key, value in extra.items():
            layer, _, leaf = key.removeprefix(prefix).partition(".")
            state[f"{names.get(layer, layer)}.{leaf}"] = value
        load_strict(model.connector.projector, state, directory)
    if "pooling_shape" in settings:
        shape = tuple(settings["pooling_shape"])
        frames = settings.get("num_frames", model.preset.media.num_frames)
        if shape[0] > frames:
            raise ConfigError(f"{directory}/config.json: pooling_shape {list(shape)} pools more frames than num_frames {frames}")
        model.connector = PooledConnector(model.connector.projector, shape, frames)
        model.preset = replace(model.preset, media=replace(model.preset.media, num_frames=frames))


def _rank(directory: Path) -> int:
    """The LoRA rank the file was trained with (its lora_A rows); PLLaVA's published one is 128."""
    from safetensors import safe_open

    with safe_open(directory / "model.safetensors", "pt") as f:
        shapes = [f.get_slice(k).get_shape() for k in f.keys() if ".lora_A." in k]
    return shapes[0][0] if shapes else LORA_RANK


def save(model: VideoLLM, out: str | Path, layout: str = "xtuner") -> None:
    """"xtuner": the whole model (LoRA merged) in Aurora's layout, loadable alone. "pllava-weights":
    PLLaVA's, `model.safetensors` with only the LoRA and projector keys and a config.json with
    pooling_shape and num_frames (loadable by PLLaVA's code on its base)."""
    from aurora.adapters.lora import save_lora

    if layout not in FAMILY.layouts:
        raise ConfigError(f"PLLaVA writes the layouts {FAMILY.layouts}, not {layout!r}")
    if layout == "xtuner":
        if hasattr(model.language_model, "merge_and_unload"):
            model = copy.deepcopy(model)
            model.language_model = model.language_model.merge_and_unload()
        auroracap.save_xtuner(model, out)
        return
    if not hasattr(model.language_model, "peft_config"):
        raise ConfigError("this PLLaVA model has no LoRA to save: attach one (--adapter) or train with lora_rank")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    projector = model.connector.projector.model
    extra = {f"multi_modal_projector.linear_{i}.{leaf}": tensor.detach()
             for i, index in ((1, 0), (2, 2)) for leaf, tensor in projector[index].state_dict().items()}
    save_lora(model.language_model, out, layout="pllava", extra=extra)
    config = {"model_type": "llava", "pooling_method": "avg", "pooling_shape": list(model.connector.pooling_shape),
              "num_frames": model.connector.num_frames, "use_pooling": True, "vision_feature_layer": -2}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


FAMILY = Family(
    name="pllava",
    layouts=("xtuner", "pllava-weights"),
    detect=detect,
    load=load,
    save=save,
    build=compose,
    default_preset=default_preset,
    attach_adapter=attach_adapter,
    adapter_layout="pllava-weights",
)
