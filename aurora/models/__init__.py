"""Model loading: one `load()` for every family, dispatched through the family registry
(`aurora.models.registry`): a checkpoint directory finds its family and layout from small JSON
files, then the family reads it. Families live one per file in this package.
"""

from __future__ import annotations

import re
from pathlib import Path

from aurora.errors import CheckpointError, ConfigError
from aurora.models.registry import Family, detect, family_of, register

__all__ = ["DEFAULT_MODEL", "Family", "attach_adapter", "detect", "family_of", "load", "register", "resolve", "save"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "default_model"  # bundled (recipes/)


def resolve(path_or_id: str | Path, revision: str | None = None) -> Path:
    """A local checkpoint directory, downloading a hub id through huggingface_hub if needed."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; --model takes a checkpoint directory or a hub id")
    text = str(path_or_id)
    if not HUB_ID.match(text) or text.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint directory {text} not found")
    return _download(text, revision)


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
        # safetensors where the repo has them; pickled .bin only when it has nothing else
        ignore = ["*.bin", "*.pt", "*.pth", "*.ckpt"] if any(f.endswith(".safetensors") for f in files) else ["*.pt", "*.pth", "*.ckpt"]
        return Path(snapshot_download(repo_id, revision=revision, ignore_patterns=ignore))
    except Exception as e:  # offline, unknown repo, gated repo: all one message
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub ({reason}); check the id and network, or pass a local directory"
        ) from None


def load(
    path_or_id: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    adapter: str | Path | None = None,
    lora_alpha: float | None = None,
):
    """Load any supported checkpoint (local directory or hub id) as a model; None loads the
    bundled default model. `adapter` names a LoRA directory applied to the language model at load
    time (`lora_alpha` overrides its scaling)."""
    from aurora.device import resolve_device, resolve_dtype

    if path_or_id is None:
        if not DEFAULT_MODEL.is_dir():
            raise CheckpointError("no default model is bundled in this install: pass a checkpoint (--model PATH_OR_HUB_ID)")
        path_or_id = DEFAULT_MODEL
    path = resolve(path_or_id, revision)
    family, layout = detect(path, trust_remote_code)
    torch_device = resolve_device(device)
    model = family.load(path, layout, dtype=resolve_dtype(dtype, torch_device), trust_remote_code=trust_remote_code)
    if adapter is not None:
        attach_adapter(model, adapter, lora_alpha)
    elif lora_alpha is not None:
        raise CheckpointError("--lora-alpha scales an adapter: pass --adapter DIR too")
    model.name = "aurora-default" if Path(path_or_id) == DEFAULT_MODEL else str(path_or_id)
    return model.to(torch_device).eval()


def attach_adapter(model, directory: str | Path, lora_alpha: float | None = None) -> None:
    """LoRA from `directory` onto the model's language model (peft wraps its layers in place, so
    generation through the model sees it); weights outside the LM are refused here — a family
    whose adapters carry them (PLLaVA's projector) loads them itself."""
    from aurora.adapters.lora import load_lora

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"adapter directory {directory} not found")
    family = family_of(model)
    if family.attach_adapter is not None:
        family.attach_adapter(model, directory, lora_alpha)
        return
    model.language_model, extra = load_lora(model.language_model, directory, lora_alpha=lora_alpha)
    if extra:
        raise CheckpointError(f"adapter {directory} also holds non-LM weights (e.g. {sorted(extra)[0]}); "
                              f"this {model.preset.family} model takes only the language model's LoRA")


def save(model, out: str | Path, layout: str | None = None) -> None:
    """Write `model` in one of its family's layouts (default: the family's first, what training writes)."""
    family = family_of(model)
    family.save(model, out, layout or family.layouts[0])


def average_weights(model, other, weight: float = 0.5):
    """`model` with every floating-point weight moved to (1 - weight) * its own + weight * `other`'s
    (in place; returns it): weight averaging of two fine-tunes of one model (Wortsman et al., "Model
    soups" / WiSE-FT, 2022). Integer buffers stay `model`'s. ConfigError unless both have the same
    family and the same weights (names and shapes)."""
    import torch

    if not 0 <= weight <= 1:
        raise ConfigError(f"the weight of the averaged model must be in [0, 1], got {weight}")
    if model.preset.family != other.preset.family:
        raise ConfigError(f"cannot average a {model.preset.family} model with a {other.preset.family} model")
    mine, theirs = model.state_dict(), other.state_dict()
    differing = sorted(set(mine) ^ set(theirs)) or sorted(k for k in mine if mine[k].shape != theirs[k].shape)
    if differing:
        raise ConfigError(f"the two models differ in {differing[0]} ({len(differing)} weights): "
                          "average only fine-tunes of one model")
    averaged = {k: torch.lerp(v, theirs[k].to(v), weight) if v.is_floating_point() else v for k, v in mine.items()}
    model.load_state_dict(averaged)
    return model

