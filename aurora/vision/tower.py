"""A vision tower that merges tokens (ToMe) inside its encoder layers.

`MergingVisionTower` wraps a transformers ViT (`CLIPVisionModel`, `SiglipVisionModel`,
`Blip2VisionModel` (EVA), or any tower whose layers have `layer_norm1`, `self_attn.{q,k,v,out}_proj`
(or a fused `qkv` and `projection`), `layer_norm2` and `mlp`) and runs
its layers with our own loop: the weights and parameter names stay transformers', so checkpoints
load unchanged, while each layer merges r tokens between the attention residual and the MLP, as
AuroraCap does. Attention goes through `scaled_dot_product_attention`.

The merging itself lives in `aurora.vision.merge` as pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aurora.vision import merge as tome
from aurora.vision.reuse import ReusePlan, attend_per_frame, fill, plan

POSITION_INTERPOLATIONS = ("auroracap", "transformers")


@dataclass
class TowerOutput:
    features: torch.Tensor  # (N, n, C) hidden states of the selected layer, CLS dropped
    sizes: torch.Tensor  # (N, n, 1) how many patches each token stands for
    source: torch.Tensor | None = None  # (N, P) output token of each input patch, if tracked

    @property
    def tokens_per_frame(self) -> int:
        return self.features.shape[1]


class MergingVisionTower(nn.Module):
    """Runs `model`'s encoder layers with ToMe merging and returns one layer's features.

    feature_layer indexes hidden states the way transformers does (0 = embeddings, k = after k
    layers, -2 = second-to-last, AuroraCap's choice); only the layers needed are run.
    proportional_attention adds log(size) of each key to the attention logits (ToMe's proportional
    attention). AuroraCap's code adds it along the query axis, where it cancels in the softmax, so
    parity with AuroraCap means leaving it off (the default).
    """

    def __init__(
        self,
        model: nn.Module,
        feature_layer: int = -2,
        proportional_attention: bool = False,
        position_interpolation: str = "auroracap",
        merge_schedule: str = "constant",
        keep_cls: bool = False,
    ):
        super().__init__()
        if position_interpolation not in POSITION_INTERPOLATIONS:
            raise ValueError(f"position_interpolation must be one of {POSITION_INTERPOLATIONS}")
        self.model = model
        self.layers = model.encoder.layers
        self.num_layers = len(self.layers)
        self.feature_layer = feature_layer
        self.layers_to_run = feature_layer if feature_layer >= 0 else self.num_layers + 1 + feature_layer
        if not 0 <= self.layers_to_run <= self.num_layers:
            raise ValueError(f"feature_layer {feature_layer} is out of range for {self.num_layers} layers")
        self.proportional_attention = proportional_attention
        if merge_schedule not in tome.SCHEDULES:
            raise ValueError(f"merge_schedule must be one of {tome.SCHEDULES}")
        self.merge_schedule = merge_schedule
        self.position_interpolation = position_interpolation
        embeddings = model.embeddings
        self.has_cls = hasattr(embeddings, "class_embedding")
        self.keep_cls = keep_cls and self.has_cls  # BLIP-2's Q-Former reads CLS with the patches
        self.pre_norm = getattr(model, "pre_layrnorm", None)  # CLIP has one, SigLIP does not
        self.patch_size = model.config.patch_size
        self.image_size = model.config.image_size
        self.hidden_size = model.config.hidden_size

    @property
    def config(self):
        return self.model.config

    def merges_per_layer(self, height: int, width: int, token_kept_ratio: float) -> int:
        """AuroraCap's r: the patch count of this input resolution, spread over all layers."""
        num_patches = height * width / self.patch_size**2  # float on purpose, as in AuroraCap
        return tome.merge_count(num_patches, token_kept_ratio, self.num_layers)

    def schedule(self, height: int, width: int, token_kept_ratio: float) -> list[int]:
        """Tokens to remove in each layer that runs."""
        r = self.merges_per_layer(height, width, token_kept_ratio)
        return tome.merge_schedule(r, self.layers_to_run, self.merge_schedule)

    def tokens_per_frame(self, height: int, width: int, token_kept_ratio: float) -> int:
        """Visual tokens per frame this tower returns at a resolution and ratio (CLS excluded unless kept)."""
        patches = (height // self.patch_size) * (width // self.patch_size)
        schedule = self.schedule(height, width, token_kept_ratio)
        dropped = int(self.has_cls and not self.keep_cls)
        return tome.tokens_after_merging(patches + int(self.has_cls), schedule, int(self.has_cls)) - dropped

    def forward(
        self, pixel_values: torch.Tensor, token_kept_ratio: float = 1.0, track_source: bool = False
    ) -> TowerOutput:
        """pixel_values (N, 3, H, W) -> features of `feature_layer` with ToMe at `token_kept_ratio`."""
        height, width = pixel_values.shape[-2:]
        schedule = self.schedule(height, width, token_kept_ratio)
        hidden = self.embed(pixel_values)  # (N, t, C)
        n, t, _ = hidden.shape
        size = hidden.new_ones(n, t, 1)
        source = torch.arange(t, device=hidden.device).expand(n, -1) if track_source else None
        for layer, r in zip(self.layers[: self.layers_to_run], schedule):
            hidden, size, positions = self._layer(layer, hidden, size, r, track_source)
            if positions is not None:
                source = positions.gather(1, source)
        if self.has_cls and not self.keep_cls:
            hidden, size = hidden[:, 1:], size[:, 1:]
            if source is not None:
                source = source[:, 1:] - 1  # patches only; CLS is never merged so ids shift by one
        return TowerOutput(features=hidden, sizes=size, source=source)

    def places(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(T, C, H, W) -> (T, N, C * p * p): each patch's pixels, in the tower's raster order."""
        p = self.patch_size
        return F.unfold(pixel_values.float(), kernel_size=p, stride=p).transpose(1, 2)

    def forward_reused(self, pixel_values: torch.Tensor, budget: float, group: int = 1) -> tuple[TowerOutput, ReusePlan]:
        """A video's (T, C, H, W) frames -> features of `feature_layer` on the whole (T, N) patch grid,
        the encoder having run only frame 0 and the `budget` share of later places that changed most
        (`aurora.vision.reuse`); the others reuse their previous frame's states. A place is one patch,
        or a `group` x `group` square of them (what a pixel shuffle makes one token of, so a connector
        can run on the computed squares alone). No ToMe: every patch keeps its place, so a reducer
        after the tower picks what changed. Also returns the plan over places (raster order)."""
        places = self.places(pixel_values)  # (T, N, C * p * p)
        patches = self._group_plan(places, budget, group, pixel_values.shape[-1] // self.patch_size)
        grid = patches[1].with_cls() if self.has_cls else patches[1]
        hidden = self._embed_computed(pixel_values, places, patches[1], grid)  # (M, C) in (frame, token) order
        for layer in self.layers[: self.layers_to_run]:
            hidden = self._reused_layer(layer, hidden, grid)
        features = fill(hidden, grid)  # (T, t, C)
        if self.has_cls and not self.keep_cls:
            features = features[:, 1:]
        return TowerOutput(features=features, sizes=features.new_ones(*features.shape[:2], 1)), patches[0]

    @staticmethod
    def _group_plan(places: torch.Tensor, budget: float, group: int, width: int) -> tuple[ReusePlan, ReusePlan]:
        """(the plan over places of `group` x `group` patches, the same plan per patch)."""
        if group == 1:
            reuse = plan(places, budget)
            return reuse, reuse
        t, n, size = places.shape
        height = n // width
        squares = places.view(t, height // group, group, width // group, group, size).transpose(2, 3)
        reuse = plan(squares.reshape(t, n // group**2, group * group * size), budget)  # squares in raster order
        rows, cols = torch.arange(height, device=places.device), torch.arange(width, device=places.device)
        square_of = ((rows[:, None] // group) * (width // group) + cols[None, :] // group).flatten()  # (N,)
        return reuse, reuse.gather(square_of)

    def _embed_computed(self, pixel_values: torch.Tensor, places: torch.Tensor, reuse: ReusePlan,
                        grid: ReusePlan) -> torch.Tensor:
        """`embed` of the computed tokens only, (M, C): a patchify stem (kernel = stride = patch) is a
        linear map of each patch's pixels, so only those patches are embedded; another stem (a conv
        or cnn stem, whose patches see their neighbours) embeds whole frames and the computed are taken."""
        emb, p = self.model.embeddings, self.patch_size
        stem = emb.patch_embedding
        patchify = isinstance(stem, nn.Conv2d) and stem.kernel_size == (p, p) and stem.stride == (p, p) \
            and stem.padding in ((0, 0), "valid")
        if not patchify:
            return self.embed(pixel_values).flatten(0, 1)[grid.flat_computed()]
        grid_h, grid_w = pixel_values.shape[-2] // p, pixel_values.shape[-1] // p
        positions = self._positions(grid_h, grid_w)[0]  # (t, C): CLS first when the tower has one
        pixels = places[reuse.computed].to(stem.weight.dtype)  # (m, C * p * p) in (frame, place) order
        offset = int(self.has_cls)
        patches = F.linear(pixels, stem.weight.flatten(1), stem.bias)
        patches = patches + positions[offset + reuse.computed.nonzero()[:, 1]].to(patches.dtype)
        if not self.has_cls:
            hidden = patches
        else:  # each frame's CLS first, then its computed patches
            is_cls = (grid.flat_computed() % grid.shape[1]) == 0
            hidden = patches.new_empty(len(is_cls), patches.shape[-1])
            hidden[~is_cls] = patches
            hidden[is_cls] = (emb.class_embedding + positions[0]).to(patches.dtype)
        return self.pre_norm(hidden) if self.pre_norm is not None else hidden

    def _reused_layer(self, layer: nn.Module, hidden: torch.Tensor, grid: ReusePlan) -> torch.Tensor:
        """One encoder layer over the computed tokens (M, C); the others' keys and values come from
        their source frames (`aurora.vision.reuse.attend_per_frame`)."""
        attn = layer.self_attn
        m, c = hidden.shape
        x = layer.layer_norm1(hidden)
        if hasattr(attn, "qkv"):
            q, k, v = attn.qkv(x).view(m, 3, attn.num_heads, -1).unbind(1)  # 3 x (M, nh, hs)
        else:
            q, k, v = (proj(x).view(m, attn.num_heads, -1) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        out = attend_per_frame(q, k, v, grid, scale=attn.scale)
        project = attn.out_proj if hasattr(attn, "out_proj") else attn.projection
        hidden = hidden + project(out.reshape(m, c))
        return hidden + layer.mlp(layer.layer_norm2(hidden))

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch embeddings + (interpolated) position embeddings (+ CLS, + pre-norm for CLIP)."""
        emb = self.model.embeddings
        dtype = next(emb.patch_embedding.parameters()).dtype  # a patchify conv or a conv stem
        patches = emb.patch_embedding(pixel_values.to(dtype))  # (N, C, h, w)
        grid_h, grid_w = patches.shape[-2:]
        patches = patches.flatten(2).transpose(1, 2)  # (N, h*w, C)
        if self.has_cls:
            cls = emb.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
            patches = torch.cat([cls, patches], dim=1)
        hidden = patches + self._positions(grid_h, grid_w).to(patches.dtype)
        if self.pre_norm is not None:
            hidden = self.pre_norm(hidden)
        return hidden

    def _positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """(1, t, C) position embeddings for a grid, interpolated bicubically when it differs."""
        table = self.model.embeddings.position_embedding  # an Embedding, or BLIP-2's (1, P + 1, C) parameter
        table = table.weight if isinstance(table, nn.Embedding) else table[0]  # (P [+1], C)
        cls_pos, patch_pos = (table[:1], table[1:]) if self.has_cls else (table[:0], table)
        side = int(math.sqrt(patch_pos.shape[0]))
        if grid_h == grid_w == side:
            return table[None]
        dim = table.shape[-1]
        grid = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()  # (1, C, side, side)
        if self.position_interpolation == "auroracap":
            # AuroraCap (after DINO): a scale factor nudged by 0.1 so the output size rounds right.
            scale = ((grid_h + 0.1) / side, (grid_w + 0.1) / side)
            grid = F.interpolate(grid, scale_factor=scale, mode="bicubic")
        else:
            grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(-1, dim).to(table.dtype)
        return torch.cat([cls_pos, grid], dim=0)[None]

    def _layer(
        self, layer: nn.Module, hidden: torch.Tensor, size: torch.Tensor, r: int, track_source: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One encoder layer: attention, residual, ToMe merge, then LN2 + MLP with residual.

        Returns the new positions of the old tokens only when `track_source` asks for them."""
        attn = layer.self_attn
        n, t, c = hidden.shape
        x = layer.layer_norm1(hidden)
        if hasattr(attn, "qkv"):  # BLIP-2 / EVA: one fused projection
            q, k, v = attn.qkv(x).view(n, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (N, nh, t, hs)
        else:
            q = attn.q_proj(x).view(n, t, attn.num_heads, -1).transpose(1, 2)  # (N, nh, t, hs)
            k = attn.k_proj(x).view(n, t, attn.num_heads, -1).transpose(1, 2)
            v = attn.v_proj(x).view(n, t, attn.num_heads, -1).transpose(1, 2)
        bias = size.log().view(n, 1, 1, t).to(q.dtype) if self.proportional_attention else None
        dropout = getattr(attn, "dropout", getattr(attn, "attention_dropout", 0.0)) if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=attn.scale)
        project = attn.out_proj if hasattr(attn, "out_proj") else attn.projection
        hidden = hidden + project(out.transpose(1, 2).reshape(n, t, c))
        positions = None
        if r > 0:
            matching = tome.match(k.mean(dim=1), r, protect_first=self.has_cls)  # metric (N, t, hs)
            if matching is not None:
                hidden, size = tome.merge_wavg(matching, hidden, size)
                positions = tome.merged_positions(matching) if track_source else None
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
        return hidden, size, positions
