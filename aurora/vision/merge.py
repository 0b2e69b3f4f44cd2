"""Token merging (ToMe, bipartite soft matching) as pure tensor functions.

`match` decides which tokens merge; `merge` / `merge_wavg` apply that decision to any tensor of
the same token layout; `merged_positions` says where each old token went (for tracking which
patches a merged token stands for). Nothing here holds state: token sizes and sources are passed in
and returned. `aurora.vision.tower` applies these inside every encoder layer.

Semantics follow AuroraCap (and ToMe, which it uses): tokens alternate into sets A (even positions)
and B (odd positions); each A token's best match in B is found by cosine similarity of a metric
(the layer's attention keys averaged over heads); the r A tokens with the highest best-match score
are merged into their match; a protected first token (CLS) is never merged; the output order is
[kept A tokens in their original order, then all B tokens].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Matching:
    """Which A tokens merge into which B tokens, for a batch; indices refer to the A / B halves."""

    kept_a: torch.Tensor  # (N, tA - r, 1) A-token indices kept, ascending
    merged_a: torch.Tensor  # (N, r, 1) A-token indices merged away
    into_b: torch.Tensor  # (N, r, 1) B-token index each merged A token goes into
    num_tokens: int  # tokens before the merge (t)

    @property
    def r(self) -> int:
        return self.merged_a.shape[1]


def merge_count(num_patches: int, token_kept_ratio: float, num_layers: int) -> int:
    """Tokens removed per layer, AuroraCap's rule: int(patches * (1 - ratio) / layers).

    The product is evaluated in AuroraCap's order so that float rounding matches it exactly.
    """
    if not 0.0 < token_kept_ratio <= 1.0:
        raise ValueError(f"token_kept_ratio must be in (0, 1], got {token_kept_ratio}")
    return int(num_patches * (1 - token_kept_ratio) / num_layers)


SCHEDULES = ("constant", "decreasing")


def merge_schedule(r: int, num_layers: int, kind: str = "constant") -> list[int]:
    """Tokens to remove in each of `num_layers` layers, r * num_layers in all.

    "constant" is AuroraCap's (and ToMe's default): r in every layer. "decreasing" removes the same
    total front-loaded, linearly down to 0 (ToMe's decreasing schedule): later layers see fewer
    tokens, so the tower is faster for the same number of tokens out.
    """
    if kind == "constant":
        return [r] * num_layers
    if kind != "decreasing":
        raise ValueError(f"merge schedule must be one of {SCHEDULES}, got {kind!r}")
    total, weights = r * num_layers, list(range(num_layers, 0, -1))
    out = [total * w // sum(weights) for w in weights]
    for i in range(total - sum(out)):  # hand the rounding remainder to the earliest layers
        out[i % num_layers] += 1
    return out


def tokens_after_merging(num_tokens: int, schedule: list[int], protected: int = 1) -> int:
    """Token count after layers that remove up to schedule[i] tokens each (clamped as in `match`)."""
    for r in schedule:
        num_tokens -= min(r, (num_tokens - protected) // 2)
    return num_tokens


def match(metric: torch.Tensor, r: int, protect_first: bool = True) -> Matching | None:
    """Bipartite soft matching on `metric` (N, t, c); returns None when nothing merges.

    r is clamped to (t - protected) // 2, as in ToMe, so at most half the tokens go per layer.
    """
    num_tokens = metric.shape[1]
    r = min(r, (num_tokens - int(protect_first)) // 2)
    if r <= 0:
        return None
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2], metric[:, 1::2]  # (N, tA, c), (N, tB, c)
        scores = a @ b.transpose(-1, -2)  # (N, tA, tB) cosine similarities
        if protect_first:
            scores[:, 0, :] = -math.inf  # the CLS token (position 0, in A) never merges
        best_score, best_b = scores.max(dim=-1)  # (N, tA)
        order = best_score.argsort(dim=-1, descending=True)[..., None]  # (N, tA, 1)
        merged_a = order[:, :r]
        kept_a = order[:, r:].sort(dim=1).values  # original order (keeps CLS first)
        into_b = best_b[..., None].gather(dim=1, index=merged_a)
    return Matching(kept_a=kept_a, merged_a=merged_a, into_b=into_b, num_tokens=num_tokens)


def merge(m: Matching, x: torch.Tensor, mode: str = "sum") -> torch.Tensor:
    """Apply a matching to x (N, t, c) -> (N, t - r, c); mode is a scatter_reduce mode."""
    a, b = x[:, ::2], x[:, 1::2]
    n, _, c = a.shape
    kept = a.gather(dim=1, index=m.kept_a.expand(n, -1, c))
    moved = a.gather(dim=1, index=m.merged_a.expand(n, -1, c))
    b = b.scatter_reduce(1, m.into_b.expand(n, -1, c), moved, reduce=mode)
    return torch.cat([kept, b], dim=1)


def merge_wavg(m: Matching, x: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted mean merge. size (N, t, 1) counts the patches each token stands for."""
    x = merge(m, x * size, mode="sum")
    size = merge(m, size, mode="sum")
    return x / size, size


def merged_positions(m: Matching) -> torch.Tensor:
    """(N, t) position in the merged sequence of every token before the merge."""
    n = m.kept_a.shape[0]
    num_a = (m.num_tokens + 1) // 2
    num_b = m.num_tokens // 2
    num_kept = num_a - m.r
    device = m.kept_a.device
    pos_a = torch.empty(n, num_a, dtype=torch.long, device=device)
    pos_a.scatter_(1, m.kept_a[..., 0], torch.arange(num_kept, device=device).expand(n, -1))
    pos_a.scatter_(1, m.merged_a[..., 0], num_kept + m.into_b[..., 0])
    pos_b = (num_kept + torch.arange(num_b, device=device)).expand(n, -1)
    positions = torch.empty(n, m.num_tokens, dtype=torch.long, device=device)
    positions[:, ::2] = pos_a
    positions[:, 1::2] = pos_b
    return positions


def unmerge(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Merged tokens back on the patch grid: (N, n, C) tokens and (N, P) the token each patch
    went into -> (N, P, C), every patch carrying its token's features (ToMe's unmerge). Lets a
    reducer that needs the grid (pooling) run after merging."""
    return x.gather(1, source[..., None].expand(-1, -1, x.shape[-1]))
