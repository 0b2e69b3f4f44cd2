"""The one place visual tokens enter the text: token segments and visual blocks become the
language model's input embeddings (and labels), for inference and training alike.

`aurora.prompts.segment` splits a rendered prompt at its placeholders into len(blocks) + 1 token
segments; `splice` embeds the segments and puts block k between segments k and k + 1, with no
separator tokens (AuroraCap, LLaVA); block tokens carry no loss.
"""

from __future__ import annotations

import torch

from aurora.errors import ConfigError
from aurora.prompts import IGNORE, IMAGE_PLACEHOLDER


def splice(
    segments: list[list[int]], labels: list[list[int]], blocks: list[torch.Tensor], embed_tokens
) -> tuple[torch.Tensor, torch.Tensor]:
    """segments (k + 1 lists of ids), their labels and k blocks (n_i, D) -> (L, D) embeds, (L,) labels."""
    if len(segments) - 1 != len(blocks):
        raise ConfigError(f"the prompt has {len(segments) - 1} {IMAGE_PLACEHOLDER} placeholders for {len(blocks)} visual blocks")
    device = embed_tokens.weight.device
    pieces, label_pieces = [], []
    for i, (ids, lab) in enumerate(zip(segments, labels)):
        if ids:
            pieces.append(embed_tokens(torch.tensor(ids, dtype=torch.long, device=device)))
            label_pieces.append(torch.tensor(lab, dtype=torch.long))
        if i < len(blocks):
            dtype = pieces[0].dtype if pieces else embed_tokens.weight.dtype
            pieces.append(blocks[i].to(device, dtype))
            label_pieces.append(torch.full((blocks[i].shape[0],), IGNORE, dtype=torch.long))
    return torch.cat(pieces), torch.cat(label_pieces)


def pad(rows: list[torch.Tensor], side: str = "left", value: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_i, ...) rows -> (B, L, ...) padded on `side` with `value`, and the (B, L) attention mask.

    Generation pads on the left (new tokens follow every prompt's end); training on the right."""
    length = max(row.shape[0] for row in rows)
    out = rows[0].new_full((len(rows), length, *rows[0].shape[1:]), value)
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for b, row in enumerate(rows):
        span = slice(length - row.shape[0], length) if side == "left" else slice(0, row.shape[0])
        out[b, span] = row
        mask[b, span] = 1
    return out, mask
