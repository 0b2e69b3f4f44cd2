"""Video-LLaMA's published weight files -> Aurora's module names, branch by branch.

Video-LLaMA assembles one model from several `.pth` files (each `{"model": state_dict}` or a bare
state dict), loaded non-strictly on top of each other:

- vision branch: its `ckpt` (e.g. VL_LLaMA_2_7B_Finetuned.pth: `video_Qformer.*`,
  `video_query_tokens`, `video_frame_position_embedding.*`, `llama_proj.*`), BLIP-2's
  `blip2_pretrained_flant5xxl.pth` (`Qformer.bert.*`, `query_tokens`, `ln_vision.*`, and maybe
  `visual_encoder.*`) and LAVIS's `eva_vit_g.pth` (EVA's own names without a prefix);
- audio branch: its `ckpt_2` (e.g. AL_LLaMA_2_7B_Finetuned.pth: `audio_Qformer.*`,
  `audio_query_tokens`, `audio_position_embedding.*`, `audio_llama_proj.*`) and ImageBind's
  `imagebind_huge.pth` (`modality_*.audio.*` are the audio encoder; other modalities are unused).

`published_to_aurora` names each key's place in `VideoLLaMA` (or why it is unused); files are read
with `weights_only=True`. Users confuse the two branches' files (Video-LLaMA issues #24, #111), so
every file says which branch it holds and a file given for the wrong one is refused in one line.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from aurora.errors import CheckpointError

BRANCHES = ("vision", "audio")
FLAG = {"vision": "--vl-weights", "audio": "--al-weights"}

# LAVIS's BERT (Q-Former) names -> transformers' Blip2QFormerModel names
_BERT = [
    (re.compile(r"^bert\.embeddings\.LayerNorm\."), "layernorm."),
    (re.compile(r"^bert\.encoder\.layer\.(\d+)\.attention\.self\."), r"encoder.layer.\1.attention.attention."),
    (re.compile(r"^bert\.encoder\.layer\.(\d+)\.crossattention\.self\."), r"encoder.layer.\1.crossattention.attention."),
    (re.compile(r"^bert\.encoder\.layer\.(\d+)\."), r"encoder.layer.\1."),
]
# what Video-LLaMA sets to None before use (text path: word/position embeddings, the text FFN, the LM head)
_BERT_UNUSED = re.compile(r"^(cls\.|bert\.embeddings\.(word_embeddings|position_embeddings|position_ids)"
                          r"|bert\.encoder\.layer\.\d+\.(intermediate|output)\.)")

# EVA ViT-g (LAVIS) names -> transformers' Blip2VisionModel names; q_bias / v_bias are joined below
_EVA = [
    (re.compile(r"^cls_token$"), "embeddings.class_embedding"),
    (re.compile(r"^pos_embed$"), "embeddings.position_embedding"),
    (re.compile(r"^patch_embed\.proj\."), "embeddings.patch_embedding."),
    (re.compile(r"^blocks\.(\d+)\.norm1\."), r"encoder.layers.\1.layer_norm1."),
    (re.compile(r"^blocks\.(\d+)\.norm2\."), r"encoder.layers.\1.layer_norm2."),
    (re.compile(r"^blocks\.(\d+)\.attn\.qkv\.weight$"), r"encoder.layers.\1.self_attn.qkv.weight"),
    (re.compile(r"^blocks\.(\d+)\.attn\.proj\."), r"encoder.layers.\1.self_attn.projection."),
    (re.compile(r"^blocks\.(\d+)\.mlp\."), r"encoder.layers.\1.mlp."),
]
_EVA_BIAS = re.compile(r"^blocks\.(\d+)\.attn\.(q|v)_bias$")
_EVA_UNUSED = re.compile(r"^(norm\.|head\.|fc_norm\.)")  # LAVIS's forward stops before them
_IMAGEBIND_OTHER = re.compile(r"^modality_(preprocessors|trunks|heads|postprocessors)\.(vision|text|depth|thermal|imu)\.")

# published top-level name -> (branch, Aurora prefix, how the rest is renamed)
_PARTS = [
    ("visual_encoder.", "vision", "vision.tower.model.", "eva"),
    ("ln_vision.", "vision", "vision.tower.model.post_layernorm.", None),
    ("Qformer.", "vision", "vision.frames.qformer.", "bert"),
    ("query_tokens", "vision", "vision.frames.queries", None),
    ("video_frame_position_embedding.", "vision", "vision.video.position.", None),
    ("video_Qformer.", "vision", "vision.video.qformer.", "bert"),
    ("video_query_tokens", "vision", "vision.video.queries", None),
    ("llama_proj.", "vision", "vision.video.proj.", None),
    ("vision_proj.", "vision", None, None),  # BLIP-2 stage-1 contrastive / matching heads: unused
    ("text_proj.", "vision", None, None),
    ("itm_head.", "vision", None, None),
    ("temp", "vision", None, None),
    ("audio_encoder.", "audio", "audio.encoder.", None),
    ("audio_position_embedding.", "audio", "audio.clips.position.", None),
    ("audio_Qformer.", "audio", "audio.clips.qformer.", "bert"),
    ("audio_query_tokens", "audio", "audio.clips.queries", None),
    ("audio_llama_proj.", "audio", "audio.clips.proj.", None),
]


def published_to_aurora(key: str) -> tuple[str, str | None]:
    """A published key -> (branch, Aurora key); Aurora key None: unused by the published forward.

    Bare EVA keys (eva_vit_g.pth) are the vision tower's, bare ImageBind keys (imagebind_huge.pth)
    the audio encoder's. Unknown keys raise KeyError."""
    if key.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed", "norm.", "head.")) and not key.startswith("modality_"):
        key = "visual_encoder." + key
    elif key.startswith("modality_"):
        key = "audio_encoder." + key
    for prefix, branch, target, rename in _PARTS:
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            rest = key[len(prefix):]
            if target is None:
                return branch, None
            if rename == "bert":
                if _BERT_UNUSED.match(rest):
                    return branch, None
                rest = _sub(_BERT, rest)
            elif rename == "eva":
                if _EVA_UNUSED.match(rest) or _EVA_BIAS.match(rest):
                    return branch, None  # biases: joined into qkv.bias by `map_state`
                rest = _sub(_EVA, rest, strict=True)
            elif branch == "audio" and _IMAGEBIND_OTHER.match(rest):
                return branch, None
            return branch, target + rest
    raise KeyError(key)


def _sub(rules, name: str, strict: bool = False) -> str:
    for pattern, replacement in rules:
        renamed, count = pattern.subn(replacement, name)
        if count:
            return renamed
    if strict:
        raise KeyError(name)
    return name


def map_state(state: dict[str, torch.Tensor], where: str) -> tuple[str, dict[str, torch.Tensor]]:
    """One file's published keys -> (its branch, Aurora-named tensors). A file mixing the branches,
    or holding keys Video-LLaMA has no place for, is refused in one line."""
    out, branches, unknown = {}, set(), []
    biases: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        try:
            branch, target = published_to_aurora(key)
        except KeyError:
            unknown.append(key)
            continue
        branches.add(branch)
        bare = key.removeprefix("visual_encoder.")
        if (match := _EVA_BIAS.match(bare)) is not None:
            biases.setdefault(match.group(1), {})[match.group(2)] = value
        elif target is not None:
            out[target] = value
    if unknown:
        raise CheckpointError(f"{where} is not a Video-LLaMA weight file: unexpected keys such as {unknown[0]!r}")
    for layer, pair in biases.items():  # EVA's q and v biases; the key projection has none
        if set(pair) != {"q", "v"}:
            raise CheckpointError(f"{where}: EVA block {layer} has a q or v bias without the other")
        out[f"vision.tower.model.encoder.layers.{layer}.self_attn.qkv.bias"] = torch.cat(
            [pair["q"], torch.zeros_like(pair["q"]), pair["v"]])
    if len(branches) != 1:
        raise CheckpointError(f"{where} holds {'no weights' if not branches else 'both branches'}; "
                              "pass each branch's files with --vl-weights / --al-weights")
    return branches.pop(), out


def read_published(path: str | Path) -> dict[str, torch.Tensor]:
    """A published `.pth` (`{"model": state_dict}` or a bare state dict), loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {path} not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"cannot read {path} as a PyTorch weight file ({reason})") from None
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict (expected {{'model': state_dict}})")
    return state


def read_branch(branch: str, files: list[str | Path]) -> dict[str, torch.Tensor]:
    """The Aurora-named weights of one branch from its files, later files winning (as Video-LLaMA
    loads them one after another). A file of the other branch is a one-line error naming it."""
    merged: dict[str, torch.Tensor] = {}
    for path in files:
        found, state = map_state(read_published(path), str(path))
        if found != branch:
            raise CheckpointError(f"{path} holds Video-LLaMA's {found} branch, not its {branch} branch: "
                                  f"pass it with {FLAG[found]} instead of {FLAG[branch]}")
        merged.update(state)
    return merged
