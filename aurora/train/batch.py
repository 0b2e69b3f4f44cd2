"""From samples to a loss: frames through the vision stage, visual blocks spliced between text, and the
token-level cross-entropy normalised once for a whole optimiser step.

Shared numerics live here once (STYLE lesson 11): `token_loss_sum` and the normaliser that makes
gradient accumulation and data parallelism give the same gradient as one big batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aurora.models.splice import pad, splice
from aurora.prompts import IGNORE
from aurora.train.data import Sample


class CaptionLoss(nn.Module):
    """Wraps a VideoLLM so one forward computes the summed answer-token loss of a micro-batch.

    A module (not a function) so that accelerate/DDP can wrap it and sync gradients.
    """

    def __init__(self, model, per_sample: bool = False):
        super().__init__()
        self.model, self.per_sample = model, per_sample

    throughput = "text_tokens_per_s"  # what the loop's log reports per second (see `volume`)

    def forward(self, samples: list[Sample], token_kept_ratio: float) -> tuple[torch.Tensor, dict]:
        """(summed loss, metrics to average in the log: none here)."""
        logits, labels = self.model.training_logits(samples, token_kept_ratio)  # each model kind feeds itself
        loss = token_loss_sum(logits, labels, self.per_sample)
        extra = getattr(self.model, "auxiliary_loss", None)  # e.g. MoE-LoRA's load balancing: a per-batch mean,
        auxiliary = extra() if extra else None  # weighted like the answer units it comes with
        if auxiliary is not None:
            loss = loss + auxiliary * self.units(samples)
        return loss, {}

    def units(self, samples: list[Sample]) -> int:
        """What a step's loss is averaged over: answer tokens, or answers (`per_sample`)."""
        return loss_units(samples, self.per_sample)

    def volume(self, samples: list[Sample]) -> int:
        """Text tokens read, for the throughput in the log."""
        return sum(sum(len(segment) for segment in s.segments) for s in samples)


def build_inputs(model, samples: list[Sample], token_kept_ratio: float):
    """-> inputs_embeds (B, L, D), attention_mask (B, L), labels (B, L); right-padded.

    Visual blocks enter the text through the same splice as at inference (`aurora.models.splice`)."""
    visuals = model.encode_visuals([model.transform(s.frames) for s in samples], token_kept_ratio)
    embed_tokens = model.language_model.get_input_embeddings()
    rows, label_rows = [], []
    for sample, blocks in zip(samples, visuals):
        row, labels = splice(sample.segments, sample.labels, list(blocks), embed_tokens)
        rows.append(row)
        label_rows.append(labels)
    embeds, mask = pad(rows, side="right")
    labels, _ = pad(label_rows, side="right", value=IGNORE)
    return embeds, mask, labels.to(model.device)


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions (logits[t] predicts labels[t+1]);
    `per_sample`: each row's tokens are averaged first, and the rows' means summed."""
    targets = labels[:, 1:]
    losses = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                             ignore_index=IGNORE, reduction="none").view(targets.shape)
    if not per_sample:
        return losses.sum()
    counts = (targets != IGNORE).sum(dim=1)
    return (losses.sum(dim=1) / counts.clamp(min=1)).sum()


def loss_units(samples: list[Sample], per_sample: bool = False) -> int:
    """What a step's loss is averaged over: its answer tokens, or its samples that have any."""
    counts = [sum(1 for labels in s.labels for label in labels if label != IGNORE) for s in samples]
    return sum(1 for c in counts if c) if per_sample else sum(counts)


def loss_scale(step_units: int, world_size: int = 1) -> float:
    """Factor for a micro-batch's summed loss so the step's gradient is the mean over all of its
    answer tokens (or samples): DDP averages gradients over processes, so multiply that average
    back up."""
    return world_size / max(step_units, 1)
