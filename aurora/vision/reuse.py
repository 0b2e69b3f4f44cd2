"""Skipping what repeats before the tower: a video's patches that did not change since the previous
frame are not run through the encoder again; they reuse that frame's states.

Per-frame token reduction after (or inside) the encoder cannot make the encoder itself cheaper
than its first layers, and at realistic shapes the encoder is most of the time to the first token.
Here the decision is taken on the pixels, before the encoder:

1. `plan`: every place (a patch, or a group of patches that later merge into one token) of frames
   1..T-1 is scored by how much its pixels changed since the same place one frame earlier (mean
   absolute difference); frame 0 is computed whole, and of the later places only the `budget`
   share that changed most (never one that did not change at all) is computed. Each place of each
   frame then reads its states from the last frame that computed it (`ReusePlan.source`).
2. The encoder runs its layers on the computed tokens only (`attend_per_frame`): each computed
   token's queries attend to its own frame's keys and values, where a place that was not computed
   takes the keys and values its source frame had at that layer (`fill`). So a changed patch still
   sees its whole frame, and a frame's static places cost nothing but a copy.
3. After the encoder, `fill` puts the reused states back on the (T, N) grid: a static place's
   features are exactly its source frame's, so a reducer after the encoder that keeps what changed
   (`aurora.vision.temporal.keep_distinct`) ranks them last.

The encoder's cost falls to about (1 + budget * (T - 1)) / T of the whole at any content; how much
quality that costs depends on how much of the video really repeats. With budget 1.0 every changed
place is computed, and a place whose pixels repeat exactly is still reused (its layer-1 states are
then exact; deeper ones see the changed neighbours only through the computed tokens).

Hand-written: transformers' towers have no way to run a subset of a frame's tokens against cached
keys and values (the layers' own weights are used, so checkpoints are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ReusePlan:
    """Which places of a (T, N) video grid the encoder computes, and where the others read from."""

    computed: torch.Tensor  # (T, N) bool: frame 0 whole, then the budget's most-changed places
    source: torch.Tensor  # (T, N) long: the last frame at or before t that computed the place

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.computed.shape)

    @property
    def share(self) -> float:
        """The share of the video's places the encoder computes."""
        return float(self.computed.float().mean())

    @property
    def counts(self) -> list[int]:
        """Computed places per frame."""
        return self.computed.sum(dim=1).tolist()

    def flat_computed(self) -> torch.Tensor:
        """(M,) flat indices t * N + place of the computed places, in (frame, place) order."""
        return self.computed.flatten().nonzero()[:, 0]

    def expand(self, per_place: int) -> "ReusePlan":
        """The plan for a grid where each place is `per_place` consecutive tokens (Qwen's merge
        units are 4 consecutive patches)."""
        return ReusePlan(self.computed.repeat_interleave(per_place, dim=1),
                         self.source.repeat_interleave(per_place, dim=1))

    def gather(self, index: torch.Tensor) -> "ReusePlan":
        """The plan for a grid whose place j is place index[j] of this one (a patch of its group)."""
        return ReusePlan(self.computed[:, index], self.source[:, index])

    def with_cls(self) -> "ReusePlan":
        """The plan with a token 0 (CLS) that every frame computes."""
        t = self.computed.shape[0]
        frames = torch.arange(t, device=self.source.device)[:, None]
        return ReusePlan(torch.cat([self.computed.new_ones(t, 1), self.computed], dim=1),
                         torch.cat([frames, self.source], dim=1))


def change_scores(places: torch.Tensor) -> torch.Tensor:
    """(T, N, P) pixel values of N places per frame -> (T - 1, N) mean absolute change of every
    place of frames 1..T-1 since the same place one frame earlier."""
    return (places[1:] - places[:-1]).abs().float().mean(dim=-1)


def plan(places: torch.Tensor, budget: float) -> ReusePlan:
    """(T, N, P) pixels per place -> which places to compute: frame 0 whole, and of frames 1..T-1
    the round(budget * N * (T - 1)) places that changed most since the previous frame (a place
    that did not change at all is never computed). Ties keep the earlier frame and place."""
    t, n, _ = places.shape
    computed = torch.zeros(t, n, dtype=torch.bool, device=places.device)
    computed[0] = True
    if t > 1:
        scores = change_scores(places).flatten()
        count = min(round(budget * n * (t - 1)), int((scores > 0).sum()))
        chosen = scores.argsort(descending=True, stable=True)[:count]
        computed[1:].view(-1)[chosen] = True
    frames = torch.arange(t, device=places.device)[:, None].expand(t, n)
    source = torch.where(computed, frames, torch.zeros_like(frames)).cummax(dim=0).values
    return ReusePlan(computed=computed, source=source)


def fill(values: torch.Tensor, reuse: ReusePlan) -> torch.Tensor:
    """(M, ...) values of the computed places, in (frame, place) order -> (T, N, ...) for every
    place, a place that was not computed taking its source frame's value."""
    t, n = reuse.shape
    grid = values.new_empty(t * n, *values.shape[1:])  # every place read below was computed
    grid[reuse.flat_computed()] = values
    places = torch.arange(n, device=values.device)
    return grid[(reuse.source * n + places).flatten()].view(t, n, *values.shape[1:])


def attend_per_frame(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, reuse: ReusePlan, scale: float | None = None,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of the computed tokens within their own frame.

    q, k, v: (M, heads, d) of the computed tokens in (frame, place) order; the keys and values of
    the places a frame did not compute are its source frames' (`fill`). mask: optional (N, N) bool,
    True where a place may attend to another (a windowed layer). Returns (M, heads, d)."""
    keys, values = fill(k, reuse).transpose(1, 2), fill(v, reuse).transpose(1, 2)  # (T, heads, N, d)
    out, start = torch.empty_like(q), 0
    computed = reuse.computed
    for frame, count in enumerate(reuse.counts):  # one call per frame: frames compute different counts
        if count == 0:
            continue
        rows = q[start:start + count].transpose(0, 1)[None]  # (1, heads, m, d)
        frame_mask = None if mask is None else mask[computed[frame]][None, None]
        attended = F.scaled_dot_product_attention(rows, keys[frame][None], values[frame][None], attn_mask=frame_mask,
                                                  scale=scale)
        out[start:start + count] = attended[0].transpose(0, 1)
        start += count
    return out
