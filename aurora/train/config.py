"""Training configuration: one flat dataclass, read from YAML, overridden by flags.

Which parts train is configuration, not code (`train_parts`, `lora_rank`), so AuroraCap's stages
are three configs: ["connector"] -> ["tower", "connector"] -> ["tower", "connector",
"language_model"] (or LoRA on the language model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from aurora.errors import ConfigError
from aurora.train.scratch import ScratchConfig

PARTS = ("tower", "connector", "language_model")
REINIT_PARTS = ("connector", "language_model")
PRECISIONS = ("no", "bf16", "fp16")
LOSS_NORMALISATIONS = ("token", "sample")
OBJECTIVES = ("caption", "attributes")


@dataclass
class TrainConfig:
    data: str | list[str] = ""  # LLaVA-format JSON / JSONL, or a list of such files (records read in turn)
    output_dir: str = "runs/train"
    model: str | None = None  # checkpoint to start from; None builds one from `scratch`
    scratch: ScratchConfig = field(default_factory=ScratchConfig)
    media_root: str | None = None  # relative media paths resolve here (default: the data file's folder)
    train_parts: tuple[str, ...] = ("connector",)
    # parts of `model` that start from fresh random weights instead of the checkpoint's (seeded by
    # `seed`; the language model first, then the connector), e.g. a trained tower with a new connector
    # and language model; each must also be in train_parts
    reinit_parts: tuple[str, ...] = ()
    # "caption": answer-token loss through the language model; "attributes": the tower alone, with
    # linear heads on the ground truth of `aurora synth` records (aurora.train.attributes)
    objective: str = "caption"
    attribute_frames: int = 0  # objective attributes: frames per clip through the tower (0: all num_frames)
    adapter: str | None = None  # an adapter directory loaded onto `model` first (e.g. PLLaVA's weights)
    adapter_alpha: float | None = None  # its LoRA alpha, if not the saved / family default
    lora_rank: int = 0  # > 0: LoRA (peft) on the language model instead of training it fully; with
    # `adapter`, that adapter's LoRA trains (its own rank and targets); a model that carries a mixture of
    # LoRA experts (Awaker) trains that one (its own rank, experts and gates)
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    # a model that carries a mixture of LoRA experts (Awaker): its gates stay fixed, and the weight of
    # the published load-balancing loss (0: none; Awaker's code: 0.001, 0 with frozen gates)
    freeze_gates: bool = False
    balance_loss: float = 0.0
    token_kept_ratio: float = 0.1  # merging during training (AuroraCap trains at 0.1)
    token_kept_ratio_max: float | None = None  # if set: each step draws a ratio in [token_kept_ratio, this]
    unmerged_share: float = 0.0  # share of steps run at ratio 1.0 (no merging), so unmerged inference works too
    # merging across time: this share of steps reduces with the reducer method "both" (ToMe in the
    # tower, then merging across time) at a ratio drawn from [temporal_ratio, temporal_ratio_max], so
    # the language model learns to read tokens merged across frames (composed families only)
    temporal_share: float = 0.0
    temporal_ratio: float = 0.05
    temporal_ratio_max: float | None = None
    # skipping repeats before the tower: this share of steps (after temporal_share's) reduces with
    # "reuse" at a ratio drawn from the same range, so the language model learns to read the states a
    # reused place repeats (composed families only)
    reuse_share: float = 0.0
    num_frames: int | None = None  # None: the model's preset (8 for AuroraCap)
    batch_size: int = 8  # per process, per micro-batch
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_steps: int = 1000
    max_grad_norm: float = 1.0
    # "token": a step's loss is the mean over its answer tokens (LLaVA, AuroraCap); "sample": each
    # answer's tokens are averaged first, so a one-sentence answer weighs as much as a long caption
    loss_normalisation: str = "token"
    mixed_precision: str = "no"
    max_length: int = 1024
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def __post_init__(self):
        if isinstance(self.scratch, dict):
            known = {f.name for f in fields(ScratchConfig)}
            unknown = sorted(set(self.scratch) - known)
            if unknown:
                raise ConfigError(f"unknown scratch settings {unknown}")
            self.scratch = ScratchConfig(**self.scratch)
        self.train_parts = tuple(self.train_parts)
        self.lora_targets = tuple(self.lora_targets)
        self.reinit_parts = tuple(self.reinit_parts)
        bad_parts = sorted(set(self.train_parts) - set(PARTS))
        checks = [
            (bool(self.data), "data is required (a LLaVA-format JSON/JSONL file)"),
            (isinstance(self.data, str) or all(isinstance(d, str) and d for d in self.data),
             f"data must be a file path or a list of file paths, got {self.data!r}"),
            (not bad_parts, f"unknown train_parts {bad_parts}: choose from {PARTS}"),
            (bool(self.train_parts) or self.lora_rank > 0, "nothing to train: set train_parts or lora_rank"),
            (set(self.reinit_parts) <= set(REINIT_PARTS),
             f"reinit_parts must be among {REINIT_PARTS}, got {list(self.reinit_parts)}"),
            (set(self.reinit_parts) <= set(self.train_parts),
             "reinit_parts must also be in train_parts (a re-initialised part that does not train stays random)"),
            (not self.reinit_parts or bool(self.model), "reinit_parts needs a model to start from"),
            (not ("language_model" in self.reinit_parts and self.adapter),
             "reinit_parts: a language model under an adapter cannot start afresh; drop adapter or language_model"),
            (not (self.lora_rank > 0 and "language_model" in self.train_parts),
             "lora_rank > 0 trains the language model through LoRA: drop language_model from train_parts"),
            (self.balance_loss >= 0, f"balance_loss must be >= 0, got {self.balance_loss}"),
            (self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got {self.objective!r}"),
            (self.objective != "attributes" or (self.train_parts == ("tower",) and self.lora_rank == 0),
             "objective attributes trains the vision tower alone: set train_parts: [tower] and no lora_rank"),
            (self.attribute_frames >= 0, "attribute_frames must be >= 0 (0: all of num_frames)"),
            (self.attribute_frames == 0 or self.objective == "attributes",
             "attribute_frames applies to objective attributes only"),
            (0 < self.token_kept_ratio <= 1, f"token_kept_ratio must be in (0, 1], got {self.token_kept_ratio}"),
            (self.token_kept_ratio_max is None or self.token_kept_ratio <= self.token_kept_ratio_max <= 1,
             "token_kept_ratio_max must be in [token_kept_ratio, 1]"),
            (0 <= self.unmerged_share <= 1, f"unmerged_share must be in [0, 1], got {self.unmerged_share}"),
            (0 <= self.temporal_share <= 1, f"temporal_share must be in [0, 1], got {self.temporal_share}"),
            (0 < self.temporal_ratio <= 1, f"temporal_ratio must be in (0, 1], got {self.temporal_ratio}"),
            (self.temporal_ratio_max is None or self.temporal_ratio <= self.temporal_ratio_max <= 1,
             "temporal_ratio_max must be in [temporal_ratio, 1]"),
            (self.temporal_share == 0 or self.objective != "attributes",
             "temporal_share applies to the caption objective only"),
            (0 <= self.reuse_share <= 1 - self.temporal_share,
             f"reuse_share must be in [0, 1 - temporal_share], got {self.reuse_share}"),
            (self.reuse_share == 0 or self.objective != "attributes",
             "reuse_share applies to the caption objective only"),
            (self.num_frames is None or self.num_frames >= 1, "num_frames must be >= 1"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (0 <= self.warmup_steps <= self.max_steps, "warmup_steps must be in [0, max_steps]"),
            (self.mixed_precision in PRECISIONS, f"mixed_precision must be one of {PRECISIONS}"),
            (self.loss_normalisation in LOSS_NORMALISATIONS,
             f"loss_normalisation must be one of {LOSS_NORMALISATIONS}, got {self.loss_normalisation!r}"),
            (self.save_every >= 1 and self.log_every >= 1, "save_every and log_every must be >= 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid training config: {message}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["train_parts"], data["lora_targets"] = list(self.train_parts), list(self.lora_targets)
        data["reinit_parts"] = list(self.reinit_parts)
        return data


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A YAML file's settings, then every override that is not None (flags win)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must be a mapping of settings")
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown training settings {unknown}")
    try:
        return TrainConfig(**data)
    except TypeError as e:
        raise ConfigError(f"bad training setting: {e}") from None
