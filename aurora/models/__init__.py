"""Model loading: one `load()` for every family, dispatched through a lazy registry.

The registry maps a checkpoint layout to the import path of its loader, so detecting a layout reads
only small JSON files and imports nothing heavy.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from aurora.errors import CheckpointError

# layout name -> "module:function" that loads it
LOADERS = {
    "auroracap-xtuner": "aurora.models.auroracap:load_xtuner",
    "auroracap-hf": "aurora.models.auroracap:load_hf_llava",
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "default_model"  # bundled (recipes/)


def detect_layout(path: Path) -> str:
    """Which layout a checkpoint directory is in; a one-line error when none fits."""
    if (path / "visual_encoder").is_dir() or (path / "projector").is_dir():
        missing = [d for d in ("visual_encoder", "projector") if not (path / d).is_dir()]
        if missing:
            raise CheckpointError(f"checkpoint {path} looks like AuroraCap's xtuner layout but lacks {missing[0]}/")
        return "auroracap-xtuner"
    config = path / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: no config.json (expected an AuroraCap xtuner or HF LLaVA layout)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config} is not valid JSON ({e})") from None
    if model_type == "llava":
        return "auroracap-hf"
    raise CheckpointError(
        f"unknown checkpoint layout in {path} (model_type {model_type!r}): Aurora loads AuroraCap's xtuner layout "
        "(visual_encoder/, projector/) and the HF LLaVA layout (model_type 'llava')"
    )


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
):
    """Load any supported checkpoint (local directory or hub id) as a `VideoLLM`; None loads the
    bundled default model."""
    from aurora.device import resolve_device, resolve_dtype

    if path_or_id is None:
        if not DEFAULT_MODEL.is_dir():
            raise CheckpointError("no default model is bundled in this install: pass a checkpoint (--model PATH_OR_HUB_ID)")
        path_or_id = DEFAULT_MODEL
    path = resolve(path_or_id, revision)
    layout = detect_layout(path)
    module_name, function = LOADERS[layout].split(":")
    loader = getattr(importlib.import_module(module_name), function)
    torch_device = resolve_device(device)
    model = loader(path, dtype=resolve_dtype(dtype, torch_device), trust_remote_code=trust_remote_code)
    model.name = "aurora-default" if Path(path_or_id) == DEFAULT_MODEL else str(path_or_id)
    return model.to(torch_device).eval()
