"""The family registry: which families exist, which checkpoint layouts each reads, and how a
checkpoint directory finds its family.

A family is a small module in `aurora/models/` that names its parts and layouts as a `Family`.
The registry maps names to "module:attribute" strings, so listing families imports nothing;
`register` adds one (a plugin, or a test's toy family) at run time.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aurora.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class Family:
    """How one model family is assembled, read and written.

    detect(path, config) -> the layout name of a checkpoint directory, or None if not this family
                            (`config` is its config.json, {} when absent).
    load(path, layout, dtype=..., trust_remote_code=...) -> a model.
    save(model, out, layout) writes one of `layouts`; the first is what training writes.
    build(**parts) -> a model from loaded parts (tower, connector, language model, tokenizer, preset).
    default_preset() -> the Preset a checkpoint without aurora_preset.json gets.
    """

    name: str
    layouts: tuple[str, ...]
    detect: Callable[[Path, dict], str | None]
    load: Callable[..., object]
    save: Callable[..., None]
    build: Callable[..., object]
    default_preset: Callable[[], object]
    kind: str = "composed"  # "composed": Aurora's parts (frames decoded at the preset's image size);
    # "native": a transformers *ForConditionalGeneration that sizes frames itself
    # attach_adapter(model, directory, lora_alpha): a family whose published adapters carry more
    # than LoRA (PLLaVA: the projector too); None: LoRA on the language model only
    attach_adapter: Callable[..., None] | None = None
    adapter_layout: str | None = None  # a layout of `layouts` holding adapters only; training writes it too


_FAMILIES: dict[str, str | Family] = {
    "pllava": "aurora.models.pllava:FAMILY",  # before AuroraCap: both read model_type "llava"
    "auroracap": "aurora.models.auroracap:FAMILY",
    "awaker": "aurora.models.awaker:FAMILY",  # before Qwen2-VL: both read model_type "qwen2_vl"
    "qwen2_vl": "aurora.models.qwen2_vl:FAMILY",
    "llava_onevision": "aurora.models.llava_onevision:FAMILY",
    "llava_next_video": "aurora.models.llava_next_video:FAMILY",
    "apollo": "aurora.models.apollo:FAMILY",
    "video_llama": "aurora.models.video_llama:FAMILY",  # a decoder directory with video_llama.json
    "smolvlm": "aurora.models.smolvlm:FAMILY",
}


def register(family: Family | str, name: str | None = None) -> None:
    """Add a family (an object, or "module:attribute" imported when first needed)."""
    key = name or (family.name if isinstance(family, Family) else None)
    if key is None:
        raise ValueError("register a lazy family with its name")
    _FAMILIES[key] = family


def names() -> list[str]:
    return list(_FAMILIES)


def get(name: str) -> Family:
    if name not in _FAMILIES:
        raise ConfigError(f"unknown model family {name!r}: choose one of {', '.join(_FAMILIES)}")
    entry = _FAMILIES[name]
    if isinstance(entry, str):
        module, attribute = entry.split(":")
        entry = _FAMILIES[name] = getattr(importlib.import_module(module), attribute)
    return entry


def family_of(model) -> Family:
    """The family a loaded or built model belongs to (named in its preset)."""
    return get(model.preset.family)


def detect(path: Path, trust_remote_code: bool = False) -> tuple[Family, str]:
    """(family, layout) of a checkpoint directory; a one-line error naming what loads when none fits
    (and, for a checkpoint that ships its own code, saying so).

    A checkpoint whose aurora_preset.json names a family is that family's; otherwise each family's
    `detect` is asked in registration order."""
    config = _json(path / "config.json") if (path / "config.json").is_file() else {}
    preset = _json(path / "aurora_preset.json") if (path / "aurora_preset.json").is_file() else {}
    named = preset.get("family") if isinstance(preset, dict) else None
    candidates = [named] if named in _FAMILIES else names()
    for name in candidates:
        family = get(name)
        layout = family.detect(path, config if isinstance(config, dict) else {})
        if layout is not None:
            return family, layout
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a checkpoint: no config.json (expected one of the layouts of {', '.join(names())})")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    layouts = "; ".join(f"{name}: {', '.join(get(name).layouts)}" for name in names())
    remote = _remote_code(config) if isinstance(config, dict) else None
    if remote and not trust_remote_code:
        raise CheckpointError(f"{path} needs remote code ({remote}), which Aurora runs only with --trust-remote-code, "
                              f"and then only for the layouts it reads: {layouts}")
    if remote:
        raise CheckpointError(f"{path} is its own code's architecture ({remote}), which no Aurora family reads: "
                              f"Aurora loads {layouts}")
    raise CheckpointError(f"unknown checkpoint layout in {path} (model_type {model_type!r}): Aurora loads {layouts}")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None


def _remote_code(config: dict) -> str | None:
    """What says a checkpoint brings its own modelling code: an auto_map, or an architecture
    transformers lacks; None for one transformers can build."""
    if config.get("auto_map"):
        return f"config.json auto_map: {', '.join(sorted(config['auto_map']))}"
    import transformers

    unknown = [name for name in config.get("architectures") or [] if not hasattr(transformers, name)]
    return f"architecture {unknown[0]} is not in transformers" if unknown else None
