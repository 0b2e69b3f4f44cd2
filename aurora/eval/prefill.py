"""Answering with the assistant turn already begun ("assistant prefix"), built on `VideoLLM`'s
public pieces until the core grows the option (proposed: `Template.render(turns,
assistant_prefix=...)` and `VideoLLM.respond_batch(..., assistant_prefix=...)`).

The prompt is the template's rendering of the one user turn, the generation prompt, the text the
template puts before an answer (vicuna: one space) and the prefix: for AuroraCap,
`USER: <image> ... <image>\\n{question} ASSISTANT: Best option:(` — MVBench's pre-filled answer.
The tail after the last frame is tokenised in one piece, as the published MVBench code does.
The returned text is what the model generated after the prefix.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from aurora.generation import GenerationOptions
from aurora.prompts import user_content


def prompt_with_prefix(template, frame_counts: list[int], text: str, prefix: str) -> str:
    """The rendered prompt (with one `<image>` per frame) ending in the started answer."""
    answer_head = template.answer.split("{content}")[0]
    return template.render([("user", user_content(frame_counts, text))]) + answer_head + prefix


@torch.inference_mode()
def respond_with_prefix(model, visuals: list, texts: list[str], prefix: str, options: GenerationOptions,
                        num_frames: int | None = None, fps: float | None = None,
                        token_kept_ratio: float | None = None) -> list[tuple[str, int, str]]:
    """One (text, generated tokens, finish reason) per (visual, text) pair, generated as one batch."""
    ratio = model.preset.token_kept_ratio if token_kept_ratio is None else token_kept_ratio
    rows = []
    for visual, text in zip(visuals, texts):
        frames = model.load_frames(visual, num_frames=num_frames, fps=fps)
        embeds = model.encode(model.transform(frames.array), ratio)  # (T, n, D)
        prompt = prompt_with_prefix(model.template, [len(frames.indices)], text, prefix)
        rows.append(model.embed_prompt(prompt, [embeds]))  # (1, L_i, D)
    embeds, mask = left_pad(rows)
    options = replace(options, stop=tuple(options.stop) + tuple(model.template.stop))
    results, _ = model.generate(embeds, options, attention_mask=mask)
    return results


def left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, L_i, D) prompts -> (B, L, D) left-padded with zeros, and the (B, L) attention mask."""
    length = max(row.shape[1] for row in rows)
    embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for b, row in enumerate(rows):
        embeds[b, length - row.shape[1]:] = row[0]
        mask[b, length - row.shape[1]:] = 1
    return embeds, mask
