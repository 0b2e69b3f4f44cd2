"""What every native model shares: a transformers `*ForConditionalGeneration` (`self.model`) that
answers through Aurora's `ChatModel`, trains LoRA inside its language model (`lora_within`), and
states its context length from its text config. A family (Qwen2-VL, the LLaVA-style video models) adds how it is fed.
"""

from __future__ import annotations

import torch

from aurora.models.video_llm import ChatModel


class NativeModel(ChatModel):
    """A ChatModel around `self.model`, a transformers multimodal model."""

    # transformers' own name of the language model inside `self.model`: LoRA wraps only q/v there,
    # never a vision tower's (CLIP and SigLIP name theirs q_proj/v_proj too)
    lora_within = "model.language_model"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

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
