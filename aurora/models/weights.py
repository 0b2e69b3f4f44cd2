"""Reading and writing checkpoint files, for every family: configs, safetensors (sharded or not),
`.bin` files loaded with `weights_only=True`, strict state-dict loading, and transformers'
`from_pretrained` with one-line errors. Nothing here knows a family's key names.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

from aurora.errors import CheckpointError

SAFE_INDEX = "model.safetensors.index.json"


def read_config(directory: Path, name: str = "config.json") -> dict:
    path = Path(directory) / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint is incomplete: {path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a directory: every *.safetensors (shards included), else *.bin loaded with
    weights_only=True (nothing is unpickled)."""
    directory = Path(directory)
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


def write_weights(state: dict[str, torch.Tensor], directory: Path, max_shard_size: str | int = "5GB") -> None:
    """safetensors in transformers' file names: one `model.safetensors`, or shards + an index."""
    from huggingface_hub import split_torch_state_dict_into_shards

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in state.items()}
    split = split_torch_state_dict_into_shards(state, filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        save_file({name: state[name] for name in names}, directory / filename, metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (directory / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")


def load_strict(module: torch.nn.Module, state: dict, where: Path | str) -> None:
    """Load `state` into `module`; a missing or unexpected key is a one-line CheckpointError."""
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
def quiet_transformers():
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


def from_pretrained(cls, path: Path, **kwargs):
    """cls.from_pretrained with a one-line error for absent, unreadable or partial weights."""
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"cannot load {path}: {_first_line(e)}") from None
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise CheckpointError(f"checkpoint is partial: {path} lacks {len(missing)} weights (e.g. {missing[0]})")
    return model.eval()


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"cannot load the tokenizer in {path}: {_first_line(e)}") from None


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
