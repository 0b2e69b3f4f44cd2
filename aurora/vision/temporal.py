"""Choosing which visual tokens to keep when what a video shows repeats over time, as pure tensor
functions (used after an encoder whose tokens keep their own positions, e.g. Qwen2-VL's merger).

`keep_distinct` scores every token by how much it differs from the same place one time step
earlier (1 - cosine similarity); tokens of the first time step are kept before any other (the
first frame holds what later ones repeat, as vLLM's efficient video sampling keeps it), ranked
among themselves by how far they are from their frame's mean. The kept tokens stay in their
original order, so positions can be gathered with the same indices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def keep_distinct(features: torch.Tensor, keep: int) -> torch.Tensor:
    """(t, n, D) tokens of t time steps with n places each -> the sorted flat indices of `keep` of them."""
    t, n, _ = features.shape
    keep = max(1, min(keep, t * n))
    first = 1 - F.cosine_similarity(features[0], features[0].mean(dim=0, keepdim=True), dim=-1)  # (n,) in [0, 2]
    later = 1 - F.cosine_similarity(features[1:], features[:-1], dim=-1)  # (t - 1, n) in [0, 2]
    scores = torch.cat([first + 3, later.flatten()])  # the first step ranks above every later token
    order = torch.argsort(scores.float(), descending=True, stable=True)
    return order[:keep].sort().values
