"""A query-only Q-Former stage (BLIP-2, Video-LLaMA): learned queries read a sequence of features
through transformers' `Blip2QFormerModel`, optionally after a learned position per time step and
followed by a linear projection to the language model's width.

Only the query path runs (no text input), so no BERT tokenizer or word embeddings are needed:
Video-LLaMA drops them too. Its Q-Formers differ only in shape, so all three are this class:

- per frame: 32 queries over one frame's EVA features, no positions, no projection (BLIP-2's);
- per video: a position per frame added to that frame's 32 query outputs, then 32 queries over all
  of them and `llama_proj`;
- per audio track: a position per clip added to that clip's embedding, 8 queries, `audio_llama_proj`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel

# bert-base-uncased's shape, written here so nothing is downloaded (Video-LLaMA reads it from the hub)
BERT_BASE = dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                 layer_norm_eps=1e-12, max_position_embeddings=512, vocab_size=30522)


def qformer_config(layers: int, encoder_width: int, cross_attention_every: int = 1, **shape) -> Blip2QFormerConfig:
    """A BERT-base Q-Former config (any field of `shape` overrides: tests use tiny ones)."""
    fields = {**BERT_BASE, **shape}
    return Blip2QFormerConfig(num_hidden_layers=layers, encoder_hidden_size=encoder_width,
                              cross_attention_frequency=cross_attention_every, use_qformer_text_input=False, **fields)


class QueryStage(nn.Module):
    """(B, T, n, D) features -> (B, Q, out) query outputs.

    With `positions` (an Embedding(T_max, D)), step t's n tokens get position t added and all T x n
    tokens are read at once; without, T must be 1 (pass (B, 1, n, D))."""

    def __init__(self, config: Blip2QFormerConfig, num_queries: int, positions: int = 0, out_features: int = 0):
        super().__init__()
        self.qformer = Blip2QFormerModel(config)
        self.queries = nn.Parameter(torch.zeros(1, num_queries, config.hidden_size))
        self.position = nn.Embedding(positions, config.encoder_hidden_size) if positions else None
        self.proj = nn.Linear(config.hidden_size, out_features) if out_features else None

    @property
    def num_queries(self) -> int:
        return self.queries.shape[1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, t, n, d = features.shape
        if self.position is not None:
            if t > self.position.num_embeddings:
                raise ValueError(f"{t} time steps but only {self.position.num_embeddings} learned positions")
            steps = torch.arange(t, device=features.device)
            features = features + self.position(steps).to(features.dtype)[None, :, None, :]  # (B, T, n, D)
        elif t != 1:
            raise ValueError("a Q-Former stage without positions reads one step at a time")
        dtype = self.queries.dtype
        out = self.qformer(query_embeds=self.queries.expand(b, -1, -1),
                           encoder_hidden_states=features.reshape(b, t * n, d).to(dtype)).last_hidden_state  # (B, Q, H)
        return self.proj(out) if self.proj is not None else out
