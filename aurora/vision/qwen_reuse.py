"""Qwen2-VL's and Qwen2.5-VL's vision transformer run with reuse (`aurora.vision.reuse`): a video's
merge units that did not change since the previous time step skip the tower.

The places are the merge units: Qwen's patches come in the merger's order, each 2 x 2 unit as
`spatial_merge_size ** 2` consecutive rows of the (t * h * w, C * 2 * 14 * 14) pixel rows, so a
unit is scored by all its rows' pixels and the plan is expanded to its patches. Then, with the
tower's own modules (transformers' weights and names unchanged):

- the patch embedding of the computed patches only (a Conv3d with kernel = stride is a linear map
  of each patch row);
- the tower's 2-D rotary angles for the whole grid (as transformers computes them), of which the
  computed patches take theirs;
- each block: norm1 -> qkv -> rotary on q, k -> attention of the computed patches within their time
  step, against keys and values where uncomputed patches take their source step's
  (`attend_per_frame`) -> proj -> residual; norm2 -> mlp -> residual. Qwen2-VL attends within the
  time step; Qwen2.5-VL's windowed blocks within the windows of the step, its
  `fullatt_block_indexes` blocks within the step. transformers reorders the patches by window;
  here they stay in the merger's order and a window mask says who sees whom (the same attention);
- the merger (per merge unit) on the computed units, then `fill` to the whole (t, h * w / merge^2)
  grid of merged tokens.

So a reused unit's merged token is an exact copy of its source step's, and a reducer after the
merger that keeps what changes (`keep_distinct`) ranks it last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_position_ids

from aurora.vision.reuse import ReusePlan, attend_per_frame, fill, plan


def merge_units(pixels: torch.Tensor, grid: tuple[int, int, int], merge: int) -> torch.Tensor:
    """(t * h * w, P) patch rows in the merger's order -> (t, h * w / merge^2, merge^2 * P): each
    merge unit's pixels, per time step."""
    t, h, w = grid
    return pixels.reshape(t, h * w // merge**2, -1)


def unit_plan(pixels: torch.Tensor, grid: tuple[int, int, int], merge: int, budget: float) -> ReusePlan:
    """Which merge units the tower computes at `budget` (`aurora.vision.reuse.plan` over the units):
    step 0 whole, then the budget's share of later units that changed most."""
    return plan(merge_units(pixels, grid, merge), budget)


def window_mask(h: int, w: int, merge: int, window_units: int, device=None) -> torch.Tensor:
    """(h * w, h * w) bool over one step's patches in the merger's order: True where two patches
    sit in the same window of `window_units` x `window_units` merge units (Qwen2.5-VL's windows,
    counted from the top left, the last row and column of windows cut short)."""
    rows = torch.arange(h // merge, device=device)[:, None] // window_units  # (h/m, 1)
    cols = torch.arange(w // merge, device=device)[None, :] // window_units  # (1, w/m)
    window = (rows * (w // merge) + cols).flatten().repeat_interleave(merge**2)  # (h * w,) window of each patch
    return window[:, None] == window[None, :]


def reused_hidden(visual: nn.Module, pixels: torch.Tensor, grid: tuple[int, int, int],
                  units: ReusePlan) -> torch.Tensor:
    """The tower's blocks on the computed patches of one video -> (t * h * w, C) block outputs in
    the merger's order, an uncomputed patch holding its source step's. `units`: the plan over merge
    units (`unit_plan`)."""
    return fill(computed_hidden(visual, pixels, grid, units), units.expand(visual.spatial_merge_size**2)).flatten(0, 1)


def computed_hidden(visual: nn.Module, pixels: torch.Tensor, grid: tuple[int, int, int],
                    units: ReusePlan) -> torch.Tensor:
    """The tower's blocks on the computed patches of one video -> their (M, C) outputs, in the
    merger's order (whole merge units, so the merger can run on them alone)."""
    t, h, w = grid
    merge = visual.spatial_merge_size
    reuse = units.expand(merge**2)  # (t, h * w) over patches
    computed = reuse.flat_computed()  # (M,)
    proj = visual.patch_embed.proj  # Conv3d, kernel = stride: (C, in * temporal * p * p) as a linear map
    hidden = F.linear(pixels[computed].to(proj.weight.dtype), proj.weight.flatten(1), proj.bias)  # (M, C)
    positions = get_vision_position_ids(torch.tensor([grid]), merge).to(hidden.device)  # (t * h * w, 2): (row, col)
    cos, sin = (angles[computed] for angles in visual.rotary_pos_emb(hidden, positions))  # (M, head_dim) each
    windows = None
    if getattr(visual, "fullatt_block_indexes", None) is not None:  # Qwen2.5-VL
        window_units = visual.window_size // merge // visual.patch_size
        windows = window_mask(h, w, merge, window_units, hidden.device)
    for index, block in enumerate(visual.blocks):
        mask = None if windows is None or index in visual.fullatt_block_indexes else windows
        hidden = _reused_block(block, hidden, cos, sin, reuse, mask)
    return hidden


def reused_features(visual: nn.Module, pixels: torch.Tensor, grid: tuple[int, int, int],
                    units: ReusePlan) -> torch.Tensor:
    """One video's (t * h * w, P) pixel rows -> its (t * h * w / merge^2, D) merged tokens (what
    `get_video_features` gives for it), the tower run under the plan `units` (`unit_plan`). The
    merger works per merge unit, so it runs on the computed units only and a reused unit takes its
    source step's merged token (`fill`): the same tokens as merging the whole grid, for less."""
    return fill(visual.merger(computed_hidden(visual, pixels, grid, units)), units).flatten(0, 1)


def _reused_block(block: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, reuse: ReusePlan,
                  mask: torch.Tensor | None) -> torch.Tensor:
    """One vision block over the computed patches (M, C), the others' keys and values from their
    source steps; the block's own norms, projections and MLP (LayerNorm + GELU MLP in Qwen2-VL,
    RMSNorm + SwiGLU in Qwen2.5-VL)."""
    attn = block.attn
    m = hidden.shape[0]
    q, k, v = attn.qkv(block.norm1(hidden)).view(m, 3, attn.num_heads, -1).unbind(1)  # 3 x (M, heads, d)
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    out = attend_per_frame(q, k, v, reuse, scale=attn.scaling, mask=mask)  # (M, heads, d)
    hidden = hidden + attn.proj(out.reshape(m, -1))
    return hidden + block.mlp(block.norm2(hidden))
