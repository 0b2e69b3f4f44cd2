"""Apollo's connector: a projection to the language model's width, then a Perceiver resampler
that turns each clip's (T·h·w) tokens into a fixed `num_output_tokens` (Apollo's mm_connector).

The resampler (Idefics2-style): learned `latents` (n, D); per layer, the latents and the context
are normalised (`input_latents_norm`, `input_context_norm`), the latents attend over
[context, latents] (grouped key/value heads, scale 1/sqrt(head_dim), no mask), a residual, then a
normalised gated MLP (down(act(gate(x)) * up(x))) with a residual; a final `norm`. Every norm is
Apollo's "WeightedNorm": LayerNorm (affine, eps 1e-5) times an extra learned vector `wheight`.

Names and config keys are Apollo's mm_connector (`proj.*`, `resampler.latents`,
`resampler.layers.N.{input_latents_norm, input_context_norm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp.{gate,up,down}_proj}`, `resampler.norm`; config `vision_hidden_size`
(one width per tower), `text_hidden_size`, `projector_type`, `resampler_type`, `num_output_tokens`,
`resampler_depth`, `resampler_n_heads`, `resampler_head_dim`, `num_key_value_heads`, `ff_multi`,
`hidden_act`), read from Apollo's training code. Not confirmed there: the projection's layout —
Aurora builds "linear" and "mlpNx_gelu" as LLaVA does (nn.Sequential: `proj.0`, `proj.2`, ...).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from aurora.errors import CheckpointError

RESAMPLERS = ("perciver",)  # Apollo's spelling; its other resamplers (flamingo, attentive / average pooling) are not built here


def build_projection(in_dim: int, out_dim: int, projector_type: str) -> nn.Sequential:
    depth = 1 if projector_type == "linear" else None
    if match := re.fullmatch(r"mlp(\d+)x_gelu", projector_type):
        depth = int(match.group(1))
    if not depth:
        raise CheckpointError(f"Aurora does not implement Apollo's projector_type {projector_type!r} "
                              "(it builds 'linear' and 'mlpNx_gelu')")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


class WeightedNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.wheight = nn.Parameter(torch.ones(dim))  # Apollo's spelling

    def forward(self, x):
        return self.norm(x) * self.wheight


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, kv_heads: int):
        super().__init__()
        self.heads, self.head_dim, self.kv_heads = heads, head_dim, kv_heads
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, latents, context):  # (B, n, D), (B, L, D) -> (B, n, D)
        b, n, _ = latents.shape
        keys = torch.cat([context, latents], dim=1)  # the latents attend to the context and to themselves
        q = self.q_proj(latents).view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, n, hs)
        k = self.k_proj(keys).view(b, -1, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, kvh, L+n, hs)
        v = self.v_proj(keys).view(b, -1, self.kv_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.kv_heads != self.heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class GatedMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        self.act_fn = ACT2FN[act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class PerceiverLayer(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, kv_heads: int, ff_multi: int, act: str):
        super().__init__()
        self.input_latents_norm = WeightedNorm(dim)
        self.input_context_norm = WeightedNorm(dim)
        self.self_attn = PerceiverAttention(dim, heads, head_dim, kv_heads)
        self.post_attention_layernorm = WeightedNorm(dim)
        self.mlp = GatedMLP(dim, dim * ff_multi, act)

    def forward(self, latents, context):
        latents = latents + self.self_attn(self.input_latents_norm(latents), self.input_context_norm(context))
        return latents + self.mlp(self.post_attention_layernorm(latents))


class PerceiverResampler(nn.Module):
    def __init__(self, dim: int, num_latents: int, depth: int, heads: int, head_dim: int, kv_heads: int,
                 ff_multi: int, act: str):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(num_latents, dim))
        self.layers = nn.ModuleList(PerceiverLayer(dim, heads, head_dim, kv_heads, ff_multi, act) for _ in range(depth))
        self.norm = WeightedNorm(dim)

    def forward(self, context):  # (B, L, D) -> (B, n, D)
        latents = self.latents.expand(context.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, context)
        return self.norm(latents)


class PerceiverConnector(nn.Module):
    """(B, L, sum of tower widths) per clip -> (B, num_output_tokens, text_hidden_size)."""

    needs_grid = False

    def __init__(self, config: dict):
        super().__init__()
        widths = config["vision_hidden_size"]
        resampler = config.get("resampler_type", "perciver")
        if resampler not in RESAMPLERS:
            raise CheckpointError(f"Aurora does not implement Apollo's resampler_type {resampler!r} (it builds {RESAMPLERS})")
        self.config = dict(config)
        dim = config["text_hidden_size"]
        self.proj = build_projection(sum(widths) if isinstance(widths, list) else widths, dim, config["projector_type"])
        self.resampler = PerceiverResampler(dim, config["num_output_tokens"], config["resampler_depth"],
                                            config["resampler_n_heads"], config["resampler_head_dim"],
                                            config["num_key_value_heads"], config.get("ff_multi", 4),
                                            config.get("hidden_act", "silu"))

    @property
    def num_output_tokens(self) -> int:
        return self.resampler.latents.shape[0]

    def forward(self, features):
        return self.resampler(self.proj(features))

    def to_config(self) -> dict:
        return {**self.config, "model_type": "mm_connector"}

    @classmethod
    def from_config(cls, config: dict) -> "PerceiverConnector":
        return cls(config)
