"""LoRA on a causal language model (any transformers ``*ForCausalLM``), through peft.

A LoRA layer adds ``(alpha / r) * B @ A`` to a frozen weight W (out, in): A is (r, in), B is
(out, r), B starts at zero so a fresh adapter changes nothing. The same weights serve training
(``apply_lora``) and inference (``load_lora``), so a published adapter runs as it was trained.

Two layouts on disk, safetensors only (pickles are never read):

- ``"peft"``: peft's own ``adapter_config.json`` + ``adapter_model.safetensors`` (keys like
  ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``). The config gives rank,
  alpha and targets.
- ``"pllava"``: PLLaVA's ``model.safetensors`` holding only the LoRA keys of its language model,
  ``language_model.`` + the peft model's parameter name
  (``language_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight``),
  beside non-LM keys such as ``multi_modal_projector.*``. The file says nothing of rank, alpha
  or targets: PLLaVA hard-codes r 128 on q_proj, v_proj and passes alpha on its command line.

In both layouts, keys outside the language model's prefix are not LoRA: ``load_lora`` returns
them to the caller (a family loads its projector from them) and ``save_lora`` writes them with
``extra``. Loading is strict: every LM key must land on a LoRA parameter of the right shape and
every LoRA parameter must be filled, else a one-line ``CheckpointError`` naming the key.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aurora.errors import CheckpointError, ConfigError

LAYOUTS = ("peft", "pllava")
_FILES = {"peft": "adapter_model.safetensors", "pllava": "model.safetensors"}
# Where the language model's keys start in each layout's file; other keys are the caller's.
# Every key under the prefix must be a LoRA weight (a full LM weight there is an error).
_LM_PREFIX = {"peft": "base_model.model.", "pllava": "language_model."}
_ADAPTER = "default"  # peft's adapter name; PLLaVA's keys carry it too


def apply_lora(lm, rank: int, alpha: float, targets: Sequence[str], dropout: float = 0.0, within: str | None = None):
    """Wrap ``lm`` (modified in place) with a fresh, trainable LoRA on the modules named in
    ``targets`` (e.g. ``("q_proj", "v_proj")``); returns the peft model. Only LoRA weights
    train; B starts at zero, so the wrapped model's outputs equal the base model's. ``within``
    limits it to the modules under one name (a native model's language model, e.g.
    "model.text_model", when its vision tower has layers of the same names)."""
    _require_peft()
    from peft import LoraConfig

    _check_rank(rank)
    _check_alpha(alpha)
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) for t in targets):
        raise ConfigError(f"LoRA targets must be a non-empty list of module names, got {targets!r}")
    if not (isinstance(dropout, numbers.Real) and 0 <= dropout < 1):
        raise ConfigError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    modules = list(targets)
    if within:  # peft matches a string target against whole module names
        modules = rf"{re.escape(within)}\..*\.({'|'.join(re.escape(t) for t in targets)})"
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=modules, lora_dropout=float(dropout),
        task_type="CAUSAL_LM",
    )
    return _wrap(lm, config, ", ".join(targets))


def load_lora(
    lm,
    directory: str | os.PathLike,
    *,
    lora_alpha: float | None = None,
    rank: int | None = None,
    targets: Sequence[str] | None = None,
    merge: bool = False,
) -> tuple[object, dict[str, torch.Tensor]]:
    """Load the LoRA adapter in ``directory`` onto ``lm`` (modified in place).

    Returns ``(model, extra)``: ``model`` is the peft-wrapped LM in eval mode with frozen LoRA
    weights (or, with ``merge=True``, ``lm`` itself with ``W + (alpha / r) B A`` folded into its
    weights: faster, but the scaling can no longer change); ``extra`` holds the file's non-LM
    tensors by their own names (e.g. ``multi_modal_projector.linear_1.weight``).

    ``lora_alpha`` overrides the alpha the adapter was saved with, so the LoRA term is scaled
    by ``lora_alpha / r`` instead (PLLaVA trained with alpha 32 but its published evaluation
    loads alpha 4). The ``"pllava"`` layout stores no settings: pass ``rank``, ``targets`` and
    ``lora_alpha`` (PLLaVA: 128, ("q_proj", "v_proj"), 4 or 32).
    """
    _require_peft()
    from peft import LoraConfig

    if lora_alpha is not None:
        _check_alpha(lora_alpha)
    directory = os.fspath(directory)
    layout = detect_layout(directory)
    path = os.path.join(directory, _FILES[layout])
    tensors = _read(path)
    prefix = _LM_PREFIX[layout]
    found = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    extra = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    if layout == "peft":
        config = _read_peft_config(directory)
        if rank is not None or targets is not None:
            raise ConfigError(
                f"{directory!r} has an adapter_config.json; rank and targets come from it, "
                f"do not pass them (lora_alpha may still override alpha)"
            )
    else:
        if rank is None or targets is None or lora_alpha is None:
            raise ConfigError(
                f"{path!r} is a PLLaVA-layout adapter, which stores no settings; pass rank, "
                f"targets and lora_alpha (PLLaVA: 128, q_proj,v_proj, 4 or 32)"
            )
        _check_rank(rank)
        config = LoraConfig(r=rank, lora_alpha=lora_alpha, target_modules=list(targets),
                            lora_dropout=0.0, task_type="CAUSAL_LM")
    config.inference_mode = True  # LoRA weights frozen
    names = config.target_modules  # a set, or one regex / "all-linear" string
    model = _wrap(lm, config, names if isinstance(names, str) else ", ".join(sorted(names or [])))
    if layout == "peft":
        _fill_peft(model, found, path)
    else:
        _fill_pllava(model, found, path)
    if lora_alpha is not None:
        set_lora_alpha(model, lora_alpha)
    model.eval()
    return (model.merge_and_unload() if merge else model), extra


def save_lora(
    model,
    directory: str | os.PathLike,
    layout: str = "peft",
    extra: dict[str, torch.Tensor] | None = None,
) -> str:
    """Write the LoRA weights of a peft-wrapped LM (from ``apply_lora`` / ``load_lora``) to
    ``directory`` in ``layout`` ("peft" or "pllava"), with ``extra`` tensors (e.g. the projector)
    under their own names in the same file; returns the file written."""
    _require_peft()
    if layout not in LAYOUTS:
        raise ConfigError(f"LoRA layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not hasattr(model, "peft_config") or list(model.peft_config) != [_ADAPTER]:
        raise ConfigError("save_lora needs an unmerged LoRA model with one adapter (from apply_lora or load_lora)")
    from peft import get_peft_model_state_dict

    if layout == "peft":
        tensors = get_peft_model_state_dict(model, adapter_name=_ADAPTER)
    else:
        tensors = {"language_model." + n: p for n, p in model.named_parameters() if ".lora_" in n}
    extra = extra or {}
    clash = sorted(set(tensors) & set(extra)) or [k for k in extra if k.startswith(_LM_PREFIX[layout])]
    if clash:
        raise ConfigError(f"extra tensor {clash[0]!r} is named like a LoRA weight; rename it")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(os.fspath(directory), _FILES[layout])
    payload = {k: v.detach().cpu().contiguous() for k, v in {**tensors, **extra}.items()}
    save_file(payload, path, metadata={"format": "pt"})
    if layout == "peft":
        model.peft_config[_ADAPTER].save_pretrained(os.fspath(directory))
    return path


def set_lora_alpha(model, alpha: float) -> None:
    """Rescale every LoRA layer of an unmerged model to ``alpha / r`` (``alpha / sqrt(r)`` for
    rsLoRA); the saved config follows, so ``save_lora`` records the new alpha."""
    _require_peft()
    from peft.tuners.lora import LoraLayer

    _check_alpha(alpha)
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers:
        raise ConfigError("no unmerged LoRA layer to rescale; load the adapter with merge=False")
    for layer in layers:
        for name in layer.lora_alpha:
            layer.lora_alpha[name] = alpha
            layer.set_scale(name, 1.0)  # scaling = 1.0 * lora_alpha / r
    for config in model.peft_config.values():
        config.lora_alpha, config.alpha_pattern = alpha, {}


def detect_layout(directory: str | os.PathLike) -> str:
    """ "peft" when ``directory`` holds adapter_model.safetensors, "pllava" for model.safetensors."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise CheckpointError(f"no adapter directory at {directory!r}; check the path")
    for layout in LAYOUTS:
        if os.path.isfile(os.path.join(directory, _FILES[layout])):
            return layout
    pickles = sorted(f for f in os.listdir(directory) if f.endswith((".bin", ".pt", ".pth")))
    hint = f"; {pickles[0]!r} is a pickle, which Aurora does not load: convert it to safetensors" if pickles else ""
    raise CheckpointError(
        f"no LoRA adapter in {directory!r}: expected adapter_model.safetensors (peft) "
        f"or model.safetensors (PLLaVA){hint}"
    )


def _require_peft() -> None:
    """peft is the train extra; say so in one line rather than an ImportError traceback."""
    try:
        import peft  # noqa: F401
    except ImportError as e:
        raise ConfigError("LoRA adapters need peft: pip install -e '.[train]'") from e


def _wrap(lm, config, targets: str):
    from peft import get_peft_model

    if hasattr(lm, "peft_config"):
        raise ConfigError("the language model already carries an adapter; pass the base model")
    try:
        return get_peft_model(lm, config)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"cannot put LoRA on modules {targets!r}: {' '.join(str(e).split())[:200]}") from e


def _read(path: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path!r}: {' '.join(str(e).split())}; re-download it") from e


def _read_peft_config(directory: str):
    from peft import LoraConfig

    path = os.path.join(directory, "adapter_config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            kind = json.load(handle).get("peft_type")
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path!r} beside adapter_model.safetensors: {e}") from e
    if kind != "LORA":
        raise CheckpointError(f"{path!r} is a {kind} adapter; only LoRA is supported")
    return LoraConfig.from_pretrained(directory)


def _check_keys(found: dict, expected: dict, path: str) -> None:
    """Strict match of a file's LM keys against the model's LoRA tensors (names and shapes)."""
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{path!r}: key {unexpected[0]!r} has no LoRA parameter to land on "
            f"({len(unexpected)} such keys); check the adapter's targets"
        )
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(
            f"{path!r} lacks LoRA weight {missing[0]!r} ({len(missing)} missing); "
            f"the adapter is partial or its targets differ"
        )
    for key, tensor in found.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path!r}: {key!r} has shape {tuple(tensor.shape)} but the model's LoRA weight is "
                f"{tuple(expected[key].shape)}; check the rank"
            )


def _fill_peft(model, found: dict, path: str) -> None:
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    _check_keys(found, get_peft_model_state_dict(model, adapter_name=_ADAPTER), path)
    result = set_peft_model_state_dict(model, found, adapter_name=_ADAPTER)
    if result.unexpected_keys:  # peft renamed a key onto nothing: should not happen after the check
        raise CheckpointError(f"{path!r}: key {result.unexpected_keys[0]!r} did not load")


def _fill_pllava(model, found: dict, path: str) -> None:
    # The file's LM keys are "language_model." + the peft model's own parameter names.
    params = {"language_model." + n: p for n, p in model.named_parameters() if ".lora_" in n}
    _check_keys(found, params, path)
    with torch.no_grad():
        for key, tensor in found.items():
            params[key].copy_(tensor)  # casts a bf16 file to the model's dtype


def _check_rank(rank) -> None:
    if not (isinstance(rank, numbers.Integral) and not isinstance(rank, bool) and rank >= 1):
        raise ConfigError(f"LoRA rank must be an integer >= 1, got {rank!r}")


def _check_alpha(alpha) -> None:
    if not (isinstance(alpha, numbers.Real) and not isinstance(alpha, bool)
            and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"lora_alpha must be a finite number > 0, got {alpha!r}")
