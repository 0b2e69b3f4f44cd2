"""Adapters: small trainable weights added to a frozen language model, applied in training and
loaded at inference from a checkpoint.

An adapter kind lives in one module here: ``lora.py`` (through peft) and ``moe_lora.py`` (a mixture
of LoRA experts, as Awaker2.5-VL uses). ``ADAPTERS`` maps a kind's name to its load-time
entry point as ``"module:function"``, imported only when asked for, so listing kinds is free.
"""

from __future__ import annotations

import importlib
from typing import Callable

from aurora.errors import ConfigError

# name -> "module:function" that loads that kind of adapter from a directory onto a causal LM.
ADAPTERS = {
    "lora": "aurora.adapters.lora:load_lora",
    "moe_lora": "aurora.adapters.moe_lora:load_moe_lora",
}


def adapter_loader(name: str) -> Callable:
    """The load function registered for adapter kind ``name``."""
    if name not in ADAPTERS:
        raise ConfigError(f"unknown adapter kind {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    module, function = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), function)
