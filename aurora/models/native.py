"""What every native model shares: a transformers `*ForConditionalGeneration` (`self.model`) that
answers through Aurora's `ChatModel`, trains LoRA inside its language model (`lora_within`), and
states its context length from its text config. A family (Qwen2-VL, the LLaVA-style video models) adds how it is fed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aurora.errors import CheckpointError
from aurora.models.video_llm import ChatModel
from aurora.models.weights import from_pretrained, load_tokenizer, quiet_transformers, read_config


class NativeModel(ChatModel):
    """A ChatModel around `self.model`, a transformers multimodal model."""

    # transformers' own name of the language model inside `self.model`: LoRA wraps only q/v there,
    # never a vision tower's (CLIP and SigLIP name theirs q_proj/v_proj too)
    lora_within = "model.language_model"

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config.text_config, "max_position_embeddings", None)

    @property
    def language_model(self):
        """The module LoRA wraps and training saves: the whole transformers model (LoRA goes only under
        `lora_within`); peft wraps its layers in place, so `self.model` sees the adapter."""
        return self.__dict__.get("_adapted") or self.model

    def __setattr__(self, name, value):
        if name != "language_model":
            return super().__setattr__(name, value)
        if hasattr(value, "peft_config"):  # kept outside the module tree: its layers are self.model's
            self.__dict__["_adapted"] = value
        else:  # a plain model again (LoRA merged): it replaces the wrapped one
            self.__dict__["_adapted"] = None
            super().__setattr__("model", value)


def open_checkpoint(path: Path, model_class: str, dtype=torch.float32, trust_remote_code: bool = False):
    """transformers' `model_class` (by name) from `path`, and its tokenizer."""
    import transformers

    return from_pretrained(getattr(transformers, model_class), path, dtype=dtype), load_tokenizer(path, trust_remote_code)


def require_tokens(path: Path, tokenizer, tokens, family: str) -> None:
    """A one-line CheckpointError unless the tokenizer knows the family's visual tokens."""
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        raise CheckpointError(f"{path}: the tokenizer lacks {family}'s visual tokens {missing}")


def chat_template(path: Path, tokenizer) -> str | None:
    """The checkpoint's chat template: the tokenizer's, else the processor's chat_template.jinja / .json."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return read_config(path, "chat_template.json").get("chat_template")
    return None


def write_configs(out: Path, configs: dict[str, dict]) -> None:
    """JSON settings files (file name -> content) into a checkpoint directory."""
    for name, content in configs.items():
        (out / name).write_text(json.dumps(content, indent=2) + "\n")


def save_native(model: NativeModel, out, configs: dict[str, dict]) -> Path:
    """transformers' own layout (what `from_pretrained` reads): the model and tokenizer, the processors'
    settings (`configs`: file name -> content) and the preset; returns the directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.model.save_pretrained(out)
        model.tokenizer.save_pretrained(out)
    write_configs(out, configs)
    model.preset.save(out)
    return out
