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
import logging
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from accelerate import init_empty_weights
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    SiglipVisionModel,
)

from aurora.connectors.projector import MLPProjector
from aurora.errors import CheckpointError, ConfigError
from aurora.models.video_llm import VideoLLM
from aurora.preset import Preset
from aurora.prompts import IMAGE_PLACEHOLDER
from aurora.vision.stem import install_stem
from aurora.vision.tower import MergingVisionTower

VISION_MODELS = {"clip_vision_model": CLIPVisionModel, "siglip_vision_model": SiglipVisionModel}


def build(vision_model, projector: MLPProjector, language_model, tokenizer, preset: Preset) -> VideoLLM:
    """Assemble the composition from loaded parts."""
    tower = MergingVisionTower(
        vision_model,
        feature_layer=preset.feature_layer,
        proportional_attention=preset.proportional_attention,
        position_interpolation=preset.position_interpolation,
        merge_schedule=preset.merge_schedule,
    )
    return VideoLLM(tower, projector, language_model, tokenizer, preset)


# ---- xtuner layout ---------------------------------------------------------------------------


def load_xtuner(path: Path, dtype=torch.float32, trust_remote_code: bool = False) -> VideoLLM:
    vision_dir = path / "visual_encoder"
    vision_config = _read_config(vision_dir)
    vision_type = vision_config.get("model_type")
    if vision_type not in VISION_MODELS:
        raise CheckpointError(f"{vision_dir} holds a {vision_type!r} model; Aurora's towers are {list(VISION_MODELS)}")
    preset = Preset.load(path, image_size=vision_config.get("image_size", Preset.image_size))
    if preset.vision_stem == "patch":
        vision = _from_pretrained(VISION_MODELS[vision_type], vision_dir, dtype=dtype)
    else:  # a stem transformers does not know: build the model, put the stem in, then load strictly
        vision = install_stem(VISION_MODELS[vision_type](AutoConfig.from_pretrained(vision_dir)), preset.vision_stem)
        _load_strict(vision, _read_weights(vision_dir), vision_dir)
        vision = vision.to(dtype).eval()
    language_model = _from_pretrained(AutoModelForCausalLM, path, dtype=dtype, trust_remote_code=trust_remote_code)
    projector = _load_projector(path / "projector").to(dtype)
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
    state = {k: v.contiguous() for k, v in model.connector.state_dict().items()}
    save_file(state, out / "projector" / "model.safetensors", metadata={"format": "pt"})
    model.preset.save(out)


def _load_projector(directory: Path) -> MLPProjector:
    config = _read_config(directory)
    if config.get("model_type") != "projector":
        raise CheckpointError(f"{directory}/config.json has model_type {config.get('model_type')!r}, expected 'projector'")
    try:
        projector = MLPProjector.from_config(config)
    except KeyError as e:
        raise CheckpointError(f"{directory}/config.json lacks the field {e.args[0]!r}") from None
    _load_strict(projector, _read_weights(directory), directory)
    return projector


# ---- HF LLaVA layout -------------------------------------------------------------------------


def load_hf_llava(path: Path, dtype=torch.float32, trust_remote_code: bool = False) -> VideoLLM:
    llava = _from_pretrained(LlavaForConditionalGeneration, path, dtype=dtype)
    config = llava.config
    if config.vision_feature_select_strategy != "default":
        raise CheckpointError(f"{path}: vision_feature_select_strategy {config.vision_feature_select_strategy!r} is not supported (AuroraCap drops CLS: 'default')")
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
    layer = config.vision_feature_layer
    preset = Preset.load(path, image_size=config.vision_config.image_size, feature_layer=layer if isinstance(layer, int) else -2)
    tokenizer = _load_tokenizer(path, trust_remote_code)
    return build(llava.model.vision_tower, projector, language_model.eval(), tokenizer, preset)


def as_hf_llava(model: VideoLLM) -> LlavaForConditionalGeneration:
    """The same weights as transformers' `LlavaForConditionalGeneration` (in memory, shared tensors);
    adds the image placeholder (and a pad token) to the tokenizer if missing."""
    tokenizer = model.tokenizer
    if IMAGE_PLACEHOLDER not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_PLACEHOLDER], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if model.preset.vision_stem != "patch":
        raise ConfigError(f"transformers' LLaVA has no {model.preset.vision_stem!r} vision stem; "
                          "save this model in Aurora's (xtuner) layout instead")
    lm, connector, tower = model.language_model, model.connector, model.tower
    config = LlavaConfig(
        vision_config=tower.model.config,
        text_config=lm.config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        projector_hidden_act=connector.act,
        multimodal_projector_bias=connector.bias,
        vision_feature_layer=model.preset.feature_layer,
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
    size = preset.image_size
    return CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(preset.image_mean),
        image_std=list(preset.image_std),
    )


def _read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"checkpoint is incomplete: {path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a directory: *.safetensors, else *.bin loaded with weights_only=True."""
    files = sorted(directory.glob("*.safetensors"))
    try:
        if files:
            return {k: v for f in files for k, v in load_file(f).items()}
        files = sorted(directory.glob("*.bin"))
        if files:
            return {k: v for f in files for k, v in torch.load(f, map_location="cpu", weights_only=True).items()}
    except Exception as e:
        raise CheckpointError(f"cannot read weights in {directory}: {str(e).splitlines()[0]}") from None
    raise CheckpointError(f"checkpoint is incomplete: no *.safetensors or *.bin weights in {directory}")


def _load_strict(module: torch.nn.Module, state: dict, where: Path) -> None:
    missing = sorted(set(module.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(module.state_dict()))
    if missing or unexpected:
        problem = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"checkpoint is partial or mismatched in {where}: {problem} weights")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"weights in {where} do not fit the config: {str(e).splitlines()[-1].strip()}") from None


@contextmanager
def _quiet_transformers():
    """transformers prints load reports and progress bars; Aurora reports problems itself."""
    logger = transformers.utils.logging
    level = logger.get_verbosity()
    bars = logger.is_progress_bar_enabled()
    logger.set_verbosity_error()
    logger.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.set_verbosity(level)
        if bars:
            logger.enable_progress_bar()


def _from_pretrained(cls, path: Path, **kwargs):
    """cls.from_pretrained with a one-line error for absent, unreadable or partial weights."""
    try:
        with _quiet_transformers():
            model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"cannot load {path}: {reason}") from None
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise CheckpointError(f"checkpoint is partial: {path} lacks {len(missing)} weights (e.g. {missing[0]})")
    return model.eval()


def _load_tokenizer(path: Path, trust_remote_code: bool):
    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"cannot load the tokenizer in {path}: {reason}") from None
