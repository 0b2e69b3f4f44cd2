"""Choosing which visual tokens to keep when what a video shows repeats over time, as pure tensor
functions (used after an encoder whose tokens keep their own positions, e.g. Qwen2-VL's merger).

`keep_distinct` scores every token by how much it differs from the same place one time step
earlier (1 - cosine similarity); tokens of the first time step are kept before any other (the
first frame holds what later ones repeat, as vLLM's efficient video sampling keeps it), ranked
among themselves by how far they are from their frame's mean. The kept tokens stay in their
original order, so positions can be gathered with the same indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aurora.vision import merge as tome


def keep_distinct(features: torch.Tensor, keep: int) -> torch.Tensor:
    """(t, n, D) tokens of t time steps with n places each -> the sorted flat indices of `keep` of them."""
    t, n, _ = features.shape
    keep = max(1, min(keep, t * n))
    first = 1 - F.cosine_similarity(features[0], features[0].mean(dim=0, keepdim=True), dim=-1)  # (n,) in [0, 2]
    later = 1 - F.cosine_similarity(features[1:], features[:-1], dim=-1)  # (t - 1, n) in [0, 2]
    scores = torch.cat([first + 3, later.flatten()])  # the first step ranks above every later token
    order = torch.argsort(scores.float(), descending=True, stable=True)
    return order[:keep].sort().values


# ---- merging across time ---------------------------------------------------------------------


@dataclass(frozen=True)
class TemporalMerge:
    """Tokens of a (T, n, C) video merged across time, in temporal order (by first frame seen)."""

    tokens: torch.Tensor  # (m, C) size-weighted means of the input tokens each stands for
    sizes: torch.Tensor  # (m, 1) how many patches each stands for (the input sizes summed)
    source: torch.Tensor  # (T * n,) output token of every input token (flat index t * n + j)
    first: torch.Tensor  # (m,) flat input index of each output token's earliest member, ascending
    boundaries: torch.Tensor  # (T,) bool: frames that start a segment (never merged into the past)

    def frames(self, tokens_per_frame: int) -> torch.Tensor:
        """(m,) the frame each output token first appears in (where it is placed in a prompt)."""
        return self.first // tokens_per_frame


def frame_similarity(features: torch.Tensor) -> torch.Tensor:
    """(T, n, C) -> (T,) how much of frame t was already in frame t - 1: the mean over its tokens of
    the best cosine similarity to a token of the previous frame (1 for frame 0). Needs no alignment
    of places between frames, so it works on tokens merged per frame (ToMe) too."""
    unit = F.normalize(features.float(), dim=-1)
    best = (unit[1:] @ unit[:-1].transpose(1, 2)).amax(dim=-1)  # (T - 1, n)
    return torch.cat([best.new_ones(1), best.mean(dim=-1)])


def scene_boundaries(features: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(T, n, C) -> (T,) bool: frame 0, and every frame whose similarity to the previous one
    (`frame_similarity`) falls below `threshold` (a cut: the scene changed)."""
    cut = frame_similarity(features) < threshold
    cut[0] = True
    return cut


# A token merges into its best match of the previous frame only when at least this alike (cosine).
# A token less alike is new (an object that appears, a colour that changes): when more than `keep`
# remain, ToMe's matching merges them across places instead, which folds the alike fragments of a
# background together before it touches what is new. Without it, at 2% of the tokens nearly every
# later token was merged into its previous frame whatever it held. Chosen on validation clips with
# the default model (500 long of seeds 3 and 7: 0.7 / 0.75 / 0.8 / none at 2% = 136.2 / 136.4 /
# 135.3 / 126.4 points summed; 143.7-144.0 at 5%). README, "Reducing tokens across time".
MIN_SIMILARITY = 0.75


def merge_across_time(features: torch.Tensor, keep: int, sizes: torch.Tensor | None = None,
                      boundary_threshold: float = 0.5, min_similarity: float | None = MIN_SIMILARITY) -> TemporalMerge:
    """Merge a video's tokens that stay alike from frame to frame, down to `keep` tokens.

    features (T, n, C): n tokens per frame (a patch grid, or tokens already merged per frame);
    sizes (T, n, 1): patches each stands for (ones by default). Every token of a frame that is not
    a segment boundary (`scene_boundaries`) is matched to its most similar token of the previous
    frame (cosine); of those at least `min_similarity` alike (None: all), the T * n - keep
    best-matched merge into their match, chains following back to the earliest frame, so a static
    background is one token per place and a change (an object that appears, moves or changes
    colour) stays. Merging is size-weighted and sizes add up, so proportional attention stays
    right. When more than `keep` remain (fewer tokens kept than a frame holds, or too few alike
    enough), ToMe's bipartite matching (`aurora.vision.merge`) merges the rest across places.
    Output tokens are ordered by the first frame they appear in.
    """
    t, n, c = features.shape
    total = t * n
    keep = max(1, min(int(keep), total))
    sizes = features.new_ones(t, n, 1) if sizes is None else sizes
    boundaries = scene_boundaries(features, boundary_threshold)
    flat = torch.arange(total, device=features.device).view(t, n)
    root = flat.clone()  # (T, n) the earliest token each token is merged into
    if t > 1 and keep < total:
        unit = F.normalize(features.float(), dim=-1)
        score, match = (unit[1:] @ unit[:-1].transpose(1, 2)).max(dim=-1)  # (T - 1, n) best in the previous frame
        score[boundaries[1:]] = -math.inf  # a segment's first frame keeps all its tokens
        if min_similarity is not None:
            score[score < min_similarity] = -math.inf  # new, not a repeat: never merged into the past
        merges = min(total - keep, int(torch.isfinite(score).sum()))
        chosen = torch.zeros(t - 1, n, dtype=torch.bool, device=features.device)
        chosen.view(-1)[score.flatten().argsort(descending=True, stable=True)[:merges]] = True
        for step in range(1, t):  # follow chains back in time: a frame's roots are resolved first
            parent = root[step - 1].gather(0, match[step - 1])
            root[step] = torch.where(chosen[step - 1], parent, root[step])
    first, source = torch.unique(root.flatten(), sorted=True, return_inverse=True)  # ascending = temporal order
    weighted = torch.zeros(len(first), c, dtype=features.dtype, device=features.device)
    weighted.index_add_(0, source, (features * sizes).reshape(total, c))
    merged_sizes = torch.zeros(len(first), 1, dtype=sizes.dtype, device=sizes.device)
    merged_sizes.index_add_(0, source, sizes.reshape(total, 1))
    tokens = weighted / merged_sizes
    while len(first) > keep:  # fewer kept than a frame holds: merge across places too (ToMe)
        matching = tome.match(tokens[None], len(first) - keep, protect_first=False)
        if matching is None:
            break
        tokens, merged_sizes = (x[0] for x in tome.merge_wavg(matching, tokens[None], merged_sizes[None]))
        moved = tome.merged_positions(matching)[0]  # (m,) new place of every old token
        earliest = torch.full((len(tokens),), total, dtype=first.dtype, device=first.device)
        earliest = earliest.scatter_reduce(0, moved, first, reduce="amin")
        order = earliest.argsort()  # back to temporal order
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device)
        tokens, merged_sizes, first = tokens[order], merged_sizes[order], earliest[order]
        source = rank[moved[source]]
    return TemporalMerge(tokens=tokens, sizes=merged_sizes, source=source, first=first, boundaries=boundaries)
