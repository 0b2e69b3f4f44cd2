"""AuroraCap: a CLIP tower with ToMe merging, a 2-layer MLP projector and a Llama-family LM.

Loads and writes AuroraCap's two checkpoint layouts:
- xtuner: the LM and its tokenizer at the root, `visual_encoder/` (a CLIP vision model) and
  `projector/` (config model_type "projector", weights `model.0.*`, `model.2.*`);
- HF LLaVA: one `LlavaForConditionalGeneration` checkpoint (`vision_tower.*`,
  `multi_modal_projector.linear_1/2.*`, `language_model.*`), loadable by transformers itself.
Weights are read from safetensors, or from `.bin` with `weights_only=True`; nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPImageProcessorPil,
    CLIPVisionModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    SiglipVisionModel,
)

from aurora.connectors import build_connector
from aurora.connectors.projector import MLPProjector
from aurora.errors import CheckpointError, ConfigError
from aurora.models.registry import Family
from aurora.models.video_llm import VideoLLM
from aurora.models.weights import (
    from_pretrained as _from_pretrained,
    load_strict as _load_strict,
    load_tokenizer as _load_tokenizer,
    quiet_transformers as _quiet_transformers,
    read_config as _read_config,
    read_weights as _read_weights,
    write_weights,
)
from aurora.preset import Preset
from aurora.prompts import IMAGE_PLACEHOLDER
from aurora.vision.stem import install_stem
from aurora.vision.tower import MergingVisionTower

VISION_MODELS = {"clip_vision_model": CLIPVisionModel, "siglip_vision_model": SiglipVisionModel}


def build(vision_model, connector, language_model, tokenizer, preset: Preset) -> VideoLLM:
    """Assemble the composition from loaded parts: the vision model gets ToMe (the reducer inside
    the encoder), the connector maps its features to the LM."""
    tower = MergingVisionTower(
        vision_model,
        feature_layer=preset.vision.feature_layer,
        proportional_attention=preset.reducer.proportional_attention,
        position_interpolation=preset.vision.position_interpolation,
        merge_schedule=preset.reducer.merge_schedule,
    )
    return VideoLLM(tower, connector, language_model, tokenizer, preset)


def default_preset() -> Preset:
    """AuroraCap's inference script: 8 uniform frames, 378 px CLIP, ratio 0.8, Vicuna, 2048 tokens."""
    return Preset()


def detect(path: Path, config: dict) -> str | None:
    if (path / "visual_encoder").is_dir() or (path / "projector").is_dir():
        missing = [d for d in ("visual_encoder", "projector") if not (path / d).is_dir()]
        if missing:
            raise CheckpointError(f"checkpoint {path} looks like AuroraCap's xtuner layout but lacks {missing[0]}/")
        return "xtuner"
    return "hf" if config.get("model_type") == "llava" and "pooling_shape" not in config else None  # PLLaVA's has one


def load(path: Path, layout: str, dtype=torch.float32, trust_remote_code: bool = False, build=build) -> VideoLLM:
    reader = load_xtuner if layout == "xtuner" else load_hf_llava
    return reader(path, dtype=dtype, trust_remote_code=trust_remote_code, build=build)


def save(model: VideoLLM, out: str | Path, layout: str = "xtuner") -> None:
    if layout not in FAMILY.layouts:
        raise ConfigError(f"AuroraCap writes the layouts {FAMILY.layouts}, not {layout!r}")
    (save_xtuner if layout == "xtuner" else save_hf_llava)(model, out)


# ---- xtuner layout ---------------------------------------------------------------------------


def load_xtuner(path: Path, dtype=torch.float32, trust_remote_code: bool = False, build=build) -> VideoLLM:
    vision_dir = path / "visual_encoder"
    vision_config = _read_config(vision_dir)
    vision_type = vision_config.get("model_type")
    if vision_type not in VISION_MODELS:
        raise CheckpointError(f"{vision_dir} holds a {vision_type!r} model; Aurora's towers are {list(VISION_MODELS)}")
    preset = Preset.load(path, image_size=vision_config.get("image_size", default_preset().vision.image_size))
    if preset.vision.vision_stem == "patch":
        vision = _from_pretrained(VISION_MODELS[vision_type], vision_dir, dtype=dtype)
    else:  # a stem transformers does not know: build the model, put the stem in, then load strictly
        vision = install_stem(VISION_MODELS[vision_type](AutoConfig.from_pretrained(vision_dir)), preset.vision.vision_stem)
        _load_strict(vision, _read_weights(vision_dir), vision_dir)
        vision = vision.to(dtype).eval()
    language_model = _from_pretrained(AutoModelForCausalLM, path, dtype=dtype, trust_remote_code=trust_remote_code)
    projector = _load_connector(path / "projector").to(dtype)
    tokenizer = _load_tokenizer(path, trust_remote_code)
    return build(vision, projector, language_model, tokenizer, preset)


def save_xtuner(model: VideoLLM, out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet_transformers():
        model.language_model.save_pretrained(out)
        model.tower.model.save_pretrained(out / "visual_encoder")
    model.tokenizer.save_pretrained(out)
    _image_processor(model.preset).save_pretrained(out / "visual_encoder")
    (out / "projector").mkdir(exist_ok=True)
    config = {**model.connector.to_config(), "architectures": ["ProjectorModel"]}
    (out / "projector" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_weights(model.connector.state_dict(), out / "projector")
    model.preset.save(out)


def _load_connector(directory: Path):
    """AuroraCap's projector (model_type "projector"), or another registered connector."""
    config = _read_config(directory)
    try:
        connector = build_connector(config)
    except CheckpointError as e:
        raise CheckpointError(f"{directory}/config.json: {e}") from None
    _load_strict(connector, _read_weights(directory), directory)
    return connector


# ---- HF LLaVA layout -------------------------------------------------------------------------


def load_hf_llava(path: Path, dtype=torch.float32, trust_remote_code: bool = False, build=build) -> VideoLLM:
    llava = _from_pretrained(LlavaForConditionalGeneration, path, dtype=dtype)
    config = llava.config
    if config.vision_feature_select_strategy != "default":
        raise CheckpointError(f"{path}: vision_feature_select_strategy {config.vision_feature_select_strategy!r} is not supported (AuroraCap drops CLS: 'default')")
    vision, projector, language_model = llava_parts(llava, dtype)
    layer = config.vision_feature_layer
    preset = Preset.load(path, image_size=config.vision_config.image_size, feature_layer=layer if isinstance(layer, int) else -2)
    tokenizer = _load_tokenizer(path, trust_remote_code)
    return build(vision, projector, language_model, tokenizer, preset)


def llava_parts(llava, dtype=torch.float32):
    """(vision tower, MLPProjector, causal LM) of a transformers LLaVA-shaped model (LLaVA,
    LLaVA-NeXT), sharing its tensors: no copy of the language model's weights."""
    config = llava.config
    source = llava.model.multi_modal_projector
    projector = MLPProjector(
        source.linear_1.in_features,
        source.linear_1.out_features,
        act=config.projector_hidden_act,
        bias=source.linear_1.bias is not None,
    ).to(dtype)
    projector.model[0].load_state_dict(source.linear_1.state_dict())
    projector.model[2].load_state_dict(source.linear_2.state_dict())
    # The LM as a plain causal LM (for `generate`), sharing llava's tensors, no copy; parameters
    # start on the meta device, buffers (rotary tables) are built for real.
    with init_empty_weights(include_buffers=False):
        language_model = AutoModelForCausalLM.from_config(config.text_config, dtype=dtype)
    state = {f"model.{k}": v for k, v in llava.model.language_model.state_dict().items()}
    state["lm_head.weight"] = llava.lm_head.weight
    language_model.load_state_dict(state, strict=True, assign=True)
    language_model.tie_weights()
    language_model.generation_config = llava.generation_config
    return llava.model.vision_tower, projector, language_model.eval()


def as_hf_llava(model: VideoLLM) -> LlavaForConditionalGeneration:
    """The same weights as transformers' `LlavaForConditionalGeneration` (in memory, shared tensors);
    adds the image placeholder (and a pad token) to the tokenizer if missing."""
    tokenizer = model.tokenizer
    if IMAGE_PLACEHOLDER not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_PLACEHOLDER], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if not isinstance(model.connector, MLPProjector):
        raise ConfigError(f"transformers' LLaVA has no {type(model.connector).__name__}; "
                          "save this model in Aurora's (xtuner) layout instead")
    if model.preset.vision.vision_stem != "patch":
        raise ConfigError(f"transformers' LLaVA has no {model.preset.vision.vision_stem!r} vision stem; "
                          "save this model in Aurora's (xtuner) layout instead")
    lm, connector, tower = model.language_model, model.connector, model.tower
    config = LlavaConfig(
        vision_config=tower.model.config,
        text_config=lm.config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        projector_hidden_act=connector.act,
        multimodal_projector_bias=connector.bias,
        vision_feature_layer=model.preset.vision.feature_layer,
        vision_feature_select_strategy="default" if tower.has_cls else "full",  # CLS dropped, as Aurora does
        image_seq_length=(tower.image_size // tower.patch_size) ** 2,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(config)
    def lm_name(k: str) -> str:
        return f"model.language_model.{k.removeprefix('model.')}" if k.startswith("model.") else k

    state = {f"model.vision_tower.{k}": v for k, v in tower.model.state_dict().items()}
    state.update({f"model.multi_modal_projector.linear_{i}.{k}": v
                  for i, index in ((1, 0), (2, 2)) for k, v in connector.model[index].state_dict().items()})
    state.update({lm_name(k): v for k, v in lm.state_dict().items()})
    llava.load_state_dict(state, strict=True, assign=True)
    # buffers outside the state dict (position ids, rotary frequencies) are still on meta: share them too
    buffers = {f"model.vision_tower.{k}": v for k, v in tower.model.named_buffers()}
    buffers.update({lm_name(k): v for k, v in lm.named_buffers()})
    for name, buffer in list(llava.named_buffers()):
        if buffer.is_meta:
            owner, _, leaf = name.rpartition(".")
            llava.get_submodule(owner).register_buffer(leaf, buffers[name], persistent=False)
    _grow_embeddings(llava, len(tokenizer))
    return llava


def save_hf_llava(model: VideoLLM, out: str | Path) -> None:
    """Write `model` as a transformers `LlavaForConditionalGeneration` checkpoint (safetensors)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    llava = as_hf_llava(model)
    with _quiet_transformers():
        llava.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    _image_processor(model.preset).save_pretrained(out)
    model.preset.save(out)


def _grow_embeddings(llava, vocab: int) -> None:
    """Make room for added tokens; new rows get the mean embedding (deterministic)."""
    old = llava.get_input_embeddings().weight.shape[0]
    if vocab <= old:
        return
    llava.resize_token_embeddings(vocab, pad_to_multiple_of=64, mean_resizing=False)
    with torch.no_grad():
        for matrix in (llava.get_input_embeddings().weight, llava.get_output_embeddings().weight):
            matrix[old:] = matrix[:old].mean(dim=0)


# ---- shared helpers ---------------------------------------------------------------------------


def _image_processor(preset: Preset) -> CLIPImageProcessorPil:
    vision = preset.vision
    return CLIPImageProcessorPil(
        size={"shortest_edge": vision.image_size},
        crop_size={"height": vision.image_size, "width": vision.image_size},
        image_mean=list(vision.image_mean),
        image_std=list(vision.image_std),
    )


FAMILY = Family(
    name="auroracap",
    layouts=("xtuner", "hf"),
    detect=detect,
    load=load,
    save=save,
    build=build,
    default_preset=default_preset,
)
