"""The training loop: accelerate for devices and processes, exact resume, incremental logs.

The same command trains on this CPU and on N GPUs under `accelerate launch` (DDP; FSDP or
DeepSpeed through accelerate's own config). Every `save_every` steps a checkpoint holds the
weights (safetensors), optimizer, scheduler, step and data position; `resume` continues with the
same step count, optimizer state, schedule and data order. The finished model is written in
its family's own layout (AuroraCap: xtuner) to `output_dir/model`.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from aurora.errors import CheckpointError, ConfigError
from aurora.train.attributes import AttributeDataset, AttributeHeads, AttributeLoss
from aurora.train.batch import CaptionLoss, loss_scale
from aurora.train.config import PARTS, TrainConfig
from aurora.train.data import VideoTextDataset, read_records, turns_of
from aurora.train.scratch import build_from_scratch, train_tokenizer

STATE_FILE = "trainer_state.pt"
WEIGHTS_FILE = "weights.safetensors"
HEADS_FILE = "heads.safetensors"  # objective attributes: the heads, needed to resume


class DataOrder:
    """An endless, seeded stream of record indices: a fresh permutation per epoch.

    Position p of the stream is epoch p // n, offset p % n, so a resumed run that knows how many
    indices were consumed continues with exactly the same order.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self._epoch, self._order = -1, None

    def __getitem__(self, position: int) -> int:
        epoch = position // self.size
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return int(self._order[position % self.size])


@dataclass
class Progress:
    step: int = 0  # optimiser steps done
    position: int = 0  # indices of the data order consumed (all processes together)


def set_trainable(model, parts: tuple[str, ...], lora_rank: int = 0, lora_alpha: int = 16, lora_targets=(),
                  freeze_gates: bool = False, balance_loss: float = 0.0):
    """Freeze everything, then unfreeze the listed parts; LoRA wraps the language model (peft). A model
    that carries its own adapter (`model.adapter`: Awaker's MoE-LoRA) trains that one instead."""
    model.requires_grad_(False)
    for part in parts:
        if not hasattr(model, part):
            raise ConfigError(f"this {model.preset.family} model has no separate {part}: train it with lora_rank")
        getattr(model, part).requires_grad_(True)
    carried = getattr(model, "adapter", None)
    if (freeze_gates or balance_loss) and carried is None:
        raise ConfigError("freeze_gates and balance_loss apply to a model with a mixture of LoRA experts (Awaker)")
    if lora_rank > 0 and carried is not None:  # its own rank, experts and gates
        carried.set_trainable(freeze_gates)
        carried.routing.balance = balance_loss
    elif lora_rank > 0 and hasattr(model.language_model, "peft_config"):  # an adapter loaded with the model
        for name, param in model.language_model.named_parameters():
            param.requires_grad_("lora_" in name)  # keeps its own rank and targets
    elif lora_rank > 0:
        from aurora.adapters.lora import apply_lora

        model.language_model = apply_lora(model.language_model, lora_rank, lora_alpha, lora_targets,
                                          within=getattr(model, "lora_within", None))
    return [p for p in model.parameters() if p.requires_grad]


def initial_model(config: TrainConfig, records: list[dict]):
    """The checkpoint named in the config, or a from-scratch model with a tokenizer trained on the
    data's text (conversations and prompts)."""
    if config.model:
        from aurora.models import load

        return load(config.model, device="cpu", dtype="float32", adapter=config.adapter, lora_alpha=config.adapter_alpha)
    if config.scratch.tokenizer_data:
        from aurora.train.data import read_records

        records = read_records(config.scratch.tokenizer_data)
    texts = []
    for record in records:
        try:
            texts.extend(text for _, text in turns_of(record))
        except ConfigError:
            continue
    if not texts:
        raise ConfigError("no usable conversations in the training data to train a tokenizer on")
    tokenizer = train_tokenizer(texts, config.scratch.vocab_size)
    return build_from_scratch(config.scratch, tokenizer)


def reinitialise(model, parts: tuple[str, ...], seed: int) -> None:
    """Fresh random weights for the named parts, in place and seeded: the language model (if named)
    first, rebuilt from its config with its own initialisation, then the connector, whose layers are
    reset (`reset_parameters`, as when it was built)."""
    for part in parts:
        if not hasattr(model, part):
            raise ConfigError(f"reinit_parts: this {model.preset.family} model has no separate {part}")
    torch.manual_seed(seed)
    if "language_model" in parts:
        language_model = model.language_model
        fresh = type(language_model)(language_model.config)
        language_model.load_state_dict(fresh.state_dict())
    if "connector" in parts:
        for module in model.connector.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


def step_ratio(config: TrainConfig, step: int) -> float:
    """The step's token kept ratio: fixed, or drawn from [ratio, ratio_max]; a share of steps
    (`unmerged_share`) runs at 1.0. Seeded by the step, so every process and a resumed run agree."""
    unmerged, u = np.random.default_rng([config.seed, step, 7]).random(2)
    if unmerged < config.unmerged_share:
        return 1.0
    if config.token_kept_ratio_max is None:
        return config.token_kept_ratio
    return config.token_kept_ratio + u * (config.token_kept_ratio_max - config.token_kept_ratio)


def _listed(data: str | list[str]) -> list[str]:
    return [data] if isinstance(data, str) else list(data)


def step_reduction(config: TrainConfig, step: int) -> tuple[str, float]:
    """The step's reducer method and ratio: "both" at a ratio drawn from [temporal_ratio,
    temporal_ratio_max] for a `temporal_share` of steps, "reuse" at a ratio from the same range for
    a `reuse_share` of them, else "tome" at `step_ratio`; seeded by the step like it."""
    across_time, u = np.random.default_rng([config.seed, step, 11]).random(2)
    if across_time < config.temporal_share + config.reuse_share:
        high = config.temporal_ratio_max or config.temporal_ratio
        method = "both" if across_time < config.temporal_share else "reuse"
        return method, config.temporal_ratio + u * (high - config.temporal_ratio)
    return "tome", step_ratio(config, step)


@contextmanager
def reducing_with(model, method: str):
    """The model's reducer method set to `method` for a step, then put back."""
    reducer = model.preset.reducer
    before, reducer.method = reducer.method, method
    try:
        yield
    finally:
        reducer.method = before


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train as configured; returns the directory of the finished model."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if config.threads:
        torch.set_num_threads(config.threads)
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    out = Path(config.output_dir)
    checkpoints = out / "checkpoints"
    latest = _latest_checkpoint(checkpoints) if resume else None
    if resume and latest is None:
        raise CheckpointError(f"--resume: no checkpoint in {checkpoints}; start without --resume")
    if not resume and checkpoints.is_dir() and any(checkpoints.iterdir()):
        raise ConfigError(f"{out} already has checkpoints: pass --resume to continue or choose a new output_dir")
    set_seed(config.seed)
    records = read_records(config.data)
    model = initial_model(config, records) if latest is None else _model_from_checkpoint(latest)
    if latest is None and config.reinit_parts:
        reinitialise(model, config.reinit_parts, config.seed)
    for share, method in (("temporal_share", "both"), ("reuse_share", "reuse")):
        if getattr(config, share) and method not in model.training_reductions:
            raise ConfigError(f"{share}: a {model.preset.family} model trains with "
                              f"{' or '.join(model.training_reductions)} only; set {share}: 0")
    params = set_trainable(model, config.train_parts, config.lora_rank, config.lora_alpha, config.lora_targets,
                           config.freeze_gates, config.balance_loss)
    heads = None
    media = model.preset.media  # frames follow the model's preset unless the config says otherwise
    num_frames = config.num_frames or media.num_frames
    if config.objective == "attributes":
        dataset = AttributeDataset(records, num_frames, model.preset.vision.image_size,
                                   model.tower.config.patch_size, config.media_root, media.sampling)
        heads = AttributeHeads(model.tower.config.hidden_size)
        params += list(heads.parameters())
        objective = AttributeLoss(model, heads, config.attribute_frames)
    else:
        dataset = VideoTextDataset(records, model.tokenizer, model.template, num_frames, config.max_length,
                                   config.media_root, media.sampling, layout=model.preset.template.layout)
        objective = CaptionLoss(model, per_sample=config.loss_normalisation == "sample")
    objective.to(accelerator.device)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    state = Progress()
    if latest is not None:
        load_model(model, latest / WEIGHTS_FILE)
        if heads is not None:
            load_model(heads, latest / HEADS_FILE)
        saved = torch.load(latest / STATE_FILE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = Progress(saved["step"], saved["position"])
        torch.set_rng_state(saved["torch_rng"])
    wrapper, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        _truncate_metrics(out / "metrics.jsonl", state.step)
    order = DataOrder(len(dataset), config.seed)
    world, rank = accelerator.num_processes, accelerator.process_index
    bar = tqdm(total=config.max_steps, initial=state.step, disable=not (progress and accelerator.is_main_process),
               desc="train", unit="step", dynamic_ncols=True)
    window = _new_window()
    model.train()
    for part in PARTS:  # frozen parts run as at inference (batch-norm statistics stay put)
        if part not in config.train_parts and not (part == "language_model" and config.lora_rank > 0):
            if hasattr(model, part):  # native models have no separate tower / connector
                getattr(model, part).eval()
    while state.step < config.max_steps:
        micro_batches = []
        for _ in range(config.grad_accum):  # each process takes its slice of the next global batch
            indices = [order[state.position + i] for i in range(config.batch_size * world)]
            state.position += len(indices)
            samples = [dataset.get(i) for i in indices[rank::world]]
            micro_batches.append([s for s in samples if s is not None])
        if len(dataset.bad) == len(dataset):
            reasons = ", ".join(f"{n} {reason}" for reason, n in dataset.skipped.reasons.most_common(3))
            raise ConfigError(f"every record of {', '.join(_listed(config.data))} is unusable ({reasons}): nothing to train on")
        step_units = int(accelerator.reduce(torch.tensor(sum(objective.units(b) for b in micro_batches),
                                                         device=accelerator.device), "sum"))
        scale = loss_scale(step_units, world)
        method, ratio = step_reduction(config, state.step)
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            with accelerator.no_sync(wrapper) if not last else nullcontext():
                with accelerator.autocast(), reducing_with(model, method):
                    if batch:
                        loss_sum, metrics = wrapper(batch, ratio)
                        for name, value in metrics.items():
                            window["metrics"].setdefault(name, []).append(value)
                    else:  # every record of this slice was skipped: a zero loss keeps processes in step
                        loss_sum = sum(p.reshape(-1)[0] * 0.0 for p in params)
                accelerator.backward(loss_sum * scale)
            window["loss"] += float(loss_sum.detach())
            window["answer"] += objective.units(batch)
            window["volume"] += objective.volume(batch)
        grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        bar.update(1)
        if state.step % config.log_every == 0 or state.step == config.max_steps:
            elapsed = time.perf_counter() - window["start"]
            record = {
                "step": state.step,
                "loss": window["loss"] / max(window["answer"], 1),  # this process's mean token (or sample) loss
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                objective.throughput: window["volume"] * world / elapsed,
                "skipped_records": dataset.skipped.total,
                "epoch": state.position / len(dataset),
            }
            if window["metrics"]:  # attributes: this process's training-batch accuracy per head
                record["accuracy"] = {k: float(np.nanmean(v)) for k, v in window["metrics"].items()}
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                            **{objective.throughput.split("_")[0] + "_s": f"{record[objective.throughput]:.0f}"})
            if accelerator.is_main_process:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            window = _new_window()
        if state.step % config.save_every == 0 or state.step == config.max_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                _save_checkpoint(checkpoints, accelerator.unwrap_model(wrapper).model, optimizer, scheduler, state,
                                 config.keep_checkpoints, heads)
    bar.close()
    final = out / "model"
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(wrapper).model
        _export(trained, final)
        _export_adapter(trained, out / "adapter")
        summary = {"steps": state.step, "skipped_records": dataset.skipped.total,
                   "skipped_by_reason": dict(dataset.skipped.reasons)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return final


def _new_window() -> dict:
    return {"loss": 0.0, "volume": 0, "answer": 0, "metrics": {}, "start": time.perf_counter()}


def _latest_checkpoint(directory: Path) -> Path | None:
    done = sorted(p for p in directory.glob("step_*") if (p / STATE_FILE).is_file()) if directory.is_dir() else []
    return done[-1] if done else None


def _model_from_checkpoint(checkpoint: Path):
    """The model a checkpoint was saved from (architecture + tokenizer); weights load after."""
    from aurora.models import load

    return load(checkpoint / "model", device="cpu", dtype="float32")


def _save_checkpoint(directory: Path, model, optimizer, scheduler, state: Progress, keep: int, heads=None) -> None:
    """Write step_N atomically (a temp dir renamed into place), then drop the oldest beyond `keep`."""
    final = directory / f"step_{state.step:08d}"
    tmp = directory / f".tmp_step_{state.step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _export(model, tmp / "model")
    save_model(model, str(tmp / WEIGHTS_FILE))
    if heads is not None:
        save_model(heads, str(tmp / HEADS_FILE))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": state.step,
                "position": state.position, "torch_rng": torch.get_rng_state()}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(directory.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _export(model, directory: Path) -> None:
    """A loadable checkpoint in the family's own layout; LoRA weights are merged into a copy of the LM."""
    from aurora.models import save

    if hasattr(model.language_model, "merge_and_unload"):
        model = copy.deepcopy(model)
        model.language_model = model.language_model.merge_and_unload()
    save(model, directory)


def _export_adapter(model, directory: Path) -> None:
    """Trained LoRA also in the family's adapter-only layout (PLLaVA's: LoRA + projector keys), if it has one."""
    from aurora.models import family_of

    family = family_of(model)
    if family.adapter_layout and hasattr(model.language_model, "peft_config"):
        family.save(model, directory, family.adapter_layout)


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines from steps after the checkpoint so the log has no duplicates."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))

