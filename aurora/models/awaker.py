"""Awaker2.5-VL (MetabrainAGI/Awaker): Qwen2-VL with a mixture of LoRA experts in its language model.

The Qwen2-VL family's model (`models/qwen2_vl.py`: transformers' own module, Aurora's preprocessing,
token reduction after the merger) with `aurora/adapters/moe_lora.py` installed on the language model:
plain LoRA on q/k/v, experts on o/gate/up/down, one expert per layer chosen per request from the mean
of the layer-0 input over the prompt span. This file adds only what that needs: the span from the
prompt's tokens, opening each request's routing before generate (or a training forward), the routing
in each Reply, and the checkpoint layouts.

The gate input for a video: Aurora scatters the video's features into it, as for an image. The
published inference code scatters only image features (a video's span holds the raw
`<|video_pad|>` embeddings there), but its training forward scattered both, so the gates were
trained on video features; Aurora follows training. Under token reduction the gate vector is taken
from the unreduced prompt, so reduction never changes which experts answer; with the reducer
method "reuse" (inherited from Qwen2-VL) that prompt holds the features of the tower run under
reuse (the tower never runs whole), so the experts can differ from the unreduced answer's.

Layouts read:
- "published": a Qwen2-VL directory (config.json, tokenizer, processor configs) holding Awaker's
  single `pytorch_model.bin` (the whole peft model: base + adapters, keys like
  `base_model.model.model.layers.0.mlp.gate_proj.lora_moe_A.0.weight`), read with
  `torch.load(weights_only=True)` and matched strictly; rank and experts come from its shapes.
- "aurora": what Aurora writes (training too): transformers' files with a "moe_lora" entry in
  config.json (the adapter's settings, the family's marker) and safetensors under Aurora's names.
Layouts written: "aurora", and "awaker-adapter" (the adapter alone, published key names,
safetensors + moe_lora_config.json; loadable onto a base with `aurora.adapters.moe_lora.load_moe_lora`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aurora.adapters.moe_lora import MoELoRA, MoELoRAConfig, config_from_keys, gate_vectors, install_moe_lora, prompt_span
from aurora.errors import CheckpointError, ConfigError
from aurora.models import qwen2_vl
from aurora.models.native import write_configs
from aurora.models.qwen2_vl import VISUAL_TOKENS, Qwen2VL, processor_configs
from aurora.models.registry import Family
from aurora.models.weights import load_tokenizer, quiet_transformers, read_config, read_weights, write_weights
from aurora.preset import Preset

WEIGHTS = "pytorch_model.bin"  # the published single file
MARKER = "moe_lora"  # config.json entry Aurora writes: the adapter's settings
ADAPTER_FILE, ADAPTER_CONFIG = "adapter_model.safetensors", "moe_lora_config.json"
PEFT_PREFIX = "base_model.model."


class Awaker(Qwen2VL):
    """A Qwen2-VL model whose language model carries MoE-LoRA (`adapter`)."""

    def __init__(self, model, tokenizer, preset: Preset, processing: dict, adapter: MoELoRA, name: str = "awaker"):
        super().__init__(model, tokenizer, preset, processing, name)
        self.adapter = adapter
        self.span_tokens = [tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|im_start|>", "<|im_end|>")]

    def spans(self, ids: torch.Tensor) -> list[tuple[int, int]]:
        """(B, L) prompt ids (padding anywhere but inside the span) -> each row's gate span."""
        return [prompt_span(row, *self.span_tokens) for row in ids.tolist()]

    def collate(self, rows: list[dict]) -> dict:
        """generate's inputs, and the request's routing opened: fixed at the prefill for the whole answer."""
        batch = super().collate(rows)
        if "inputs_embeds" in batch:  # reduced: the gate vectors were taken from the unreduced prompts
            self.adapter.open(gate_input=torch.stack([row["gate_input"] for row in rows]).to(self.device))
        else:
            self.adapter.open(spans=self.spans(batch["input_ids"]))
        return batch

    def reduce(self, inputs: dict, ratio: float) -> dict:
        embeds, keep = self.embed_visuals(inputs, ratio)
        row = self.keep_tokens(inputs, embeds, keep)
        row["gate_input"] = gate_vectors(embeds[None], self.spans(inputs["input_ids"][None]))[0]  # (D,)
        return row

    def training_logits(self, samples, token_kept_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = self.training_inputs(samples, token_kept_ratio)
        self.adapter.open(spans=self.spans(inputs["input_ids"]))  # each training forward is its own request
        return self.model(**inputs).logits, labels

    def auxiliary_loss(self) -> torch.Tensor | None:
        """The load-balancing loss of the last training forward (None without one)."""
        return self.adapter.loss()

    def annotate(self, replies) -> None:
        """Each reply gets the experts its request was routed to (row order = the batch's)."""
        names = self.adapter.short_names()
        for row, reply in enumerate(replies):
            reply.routing = self.adapter.routing.report(row, names, self.adapter.config.num_experts)


# ---- the family ------------------------------------------------------------------------------------

def default_preset() -> Preset:
    """Qwen2-VL's settings under the family's own name."""
    return Preset.of(family="awaker", num_frames=8, sampling="uniform", token_kept_ratio=1.0,
                     template={"name": "qwen2_vl", "layout": "video"}, max_new_tokens=512)


def detect(path: Path, config: dict) -> str | None:
    if config.get("model_type") != "qwen2_vl":
        return None
    if isinstance(config.get(MARKER), dict):
        return "aurora"
    if (path / WEIGHTS).is_file() and any(".lora_moe_A." in key for key in _read_published(path / WEIGHTS)):
        return "published"
    return None


def load(path: Path, layout: str, dtype=torch.float32, trust_remote_code: bool = False) -> Awaker:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    raw = read_config(path)
    with quiet_transformers():
        config = Qwen2VLConfig.from_pretrained(path)
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    if layout == "aurora":
        adapter = install_moe_lora(model, MoELoRAConfig.from_dict(raw[MARKER]))
        _load_exactly(model, read_weights(path), str(path), rename=str)
    elif layout == "published":
        state = _read_published(path / WEIGHTS)
        adapter = install_moe_lora(model, config_from_keys(state))
        _load_exactly(model, state, str(path / WEIGHTS), rename=published_name)
    else:
        raise CheckpointError(f"{path}: an Awaker model loads from the aurora or published layout, not {layout!r}")
    tokenizer = load_tokenizer(path, trust_remote_code)
    missing = [t for t in VISUAL_TOKENS + ("<|im_start|>", "<|im_end|>") if t not in tokenizer.get_vocab()]
    if missing:
        raise CheckpointError(f"{path}: the tokenizer lacks Qwen2-VL's tokens {missing}")
    preset = Preset.load(path, **default_preset().to_dict())
    return Awaker(model.eval(), tokenizer, preset, qwen2_vl._processing(path), adapter)


def save(model: Awaker, out, layout: str | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adapter = model.adapter
    if layout == "awaker-adapter":
        from safetensors.torch import save_file

        tensors = {published_name(k): v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()}
        save_file(tensors, out / ADAPTER_FILE, metadata={"format": "pt"})
        (out / ADAPTER_CONFIG).write_text(json.dumps(adapter.config.to_dict(), indent=2) + "\n")
        return
    if layout not in (None, "aurora"):
        raise ConfigError(f"an Awaker model is written as aurora or awaker-adapter, not {layout!r} "
                          "(Aurora writes no pickled pytorch_model.bin)")
    skip = _tied(model.model)
    write_weights({k: v for k, v in model.model.state_dict().items() if k not in skip}, out)
    config = model.model.config.to_dict()
    config[MARKER] = adapter.config.to_dict()
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    model.tokenizer.save_pretrained(out)
    write_configs(out, processor_configs(model))
    model.preset.save(out)


def attach_adapter(model, directory, lora_alpha=None) -> None:
    raise ConfigError("an Awaker model carries its adapter in its weights: drop --adapter")


def published_name(name: str) -> str:
    """Aurora's parameter name (transformers 5's Qwen2-VL) -> the published one (peft 0.6 around
    transformers 4.45's Qwen2-VL, whose language model was `model.` and vision tower `visual.`)."""
    if name.startswith("model.language_model."):
        name = "model." + name[len("model.language_model."):]
    elif name.startswith("model.visual."):
        name = name[len("model."):]
    return PEFT_PREFIX + name


def _read_published(path: Path) -> dict[str, torch.Tensor]:
    try:  # mmap: detecting reads only the key index, loading reads tensors as they are copied
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise CheckpointError(f"cannot read {path} (a pytorch_model.bin loaded with weights_only): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict")
    return state


def _tied(model) -> set[str]:
    return {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()


def _load_exactly(model, state: dict, where: str, rename) -> None:
    """Every parameter of `model` from `state` (keys `rename(name)`); a missing or unexpected key
    is a one-line CheckpointError naming it."""
    own = model.state_dict()
    skip = _tied(model)
    wanted = {rename(k): k for k in own}
    unexpected = sorted(set(state) - set(wanted))
    missing = sorted(k for k in set(wanted) - set(state) if wanted[k] not in skip)
    if unexpected:
        raise CheckpointError(f"{where}: unexpected key {unexpected[0]!r} ({len(unexpected)} such keys); "
                              "the weights do not fit this config")
    if missing:
        raise CheckpointError(f"{where}: missing key {missing[0]!r} ({len(missing)} missing); the checkpoint is partial")
    with torch.no_grad():
        for key, name in wanted.items():
            if key not in state:
                continue
            if tuple(state[key].shape) != tuple(own[name].shape):
                raise CheckpointError(f"{where}: {key!r} has shape {tuple(state[key].shape)}, the model's is "
                                      f"{tuple(own[name].shape)}")
            own[name].copy_(state[key])


FAMILY = Family(
    name="awaker",
    layouts=("aurora", "published", "awaker-adapter"),
    detect=detect,
    load=load,
    save=save,
    build=Awaker,
    default_preset=default_preset,
    kind="native",
    attach_adapter=attach_adapter,
)
