"""PLLaVA's reducers in one run: pooling after the projector alone, pooling + ToMe inside the
tower, and ToMe alone (a projector per frame), at PLLaVA's shapes.

    python benchmarks/pllava_pooling.py [--frames 16] [--ratio 0.5]

A CLIP ViT-L/14-336-shaped tower and a Qwen2-0.5B-shaped language model with random weights (speed
does not depend on them), batch 1, 4 new tokens. PLLaVA pools each video's (T, 24, 24) grid to
(16, 12, 12): 2,304 tokens. With ToMe on, merged tokens are put back on the grid before pooling,
so the tower gets faster while the language model sees the same count. Reports the visual tokens
after each stage and time to first token (decode + preprocess + encode + prefill), as ratios to
pooling alone.
"""

from __future__ import annotations

import numpy as np
import torch
from _harness import case_main, parser, run_cases, save, table
from transformers import CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM

from aurora.connectors.pool import PooledConnector
from aurora.connectors.projector import MLPProjector
from aurora.models.auroracap import build
from aurora.models.pllava import POOLING_SHAPE, default_preset
from aurora.testing.checkpoints import build_tokenizer

CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14)
QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True)


def run_case(case: dict) -> dict:
    from dataclasses import replace

    from aurora.testing.media import write_video

    device = torch.device(case["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    tokenizer = build_tokenizer("llama")
    vision = CLIPVisionModel(CLIPVisionConfig(**CLIP_L_336))
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), **QWEN2_05B))
    projector = MLPProjector(CLIP_L_336["hidden_size"], QWEN2_05B["hidden_size"])
    preset = replace(default_preset(), media=replace(default_preset().media, num_frames=case["frames"]))
    if case["pool"]:
        connector = PooledConnector(projector, POOLING_SHAPE, case["frames"])
    else:  # ToMe alone: AuroraCap's composition, a block per frame
        connector = projector
        preset = replace(preset, template=replace(preset.template, layout="frames"))
    model = build(vision.to(device, dtype), connector.to(device, dtype), lm.to(device, dtype), tokenizer, preset).eval()
    clip = f"/tmp/aurora-bench-pllava-{case['frames']}.mp4"
    write_video(clip, np.random.default_rng(0).integers(0, 255, (64, 360, 480, 3), dtype=np.uint8), fps=8)
    for _ in range(2):  # warm-up, then measured
        reply = model.caption(clip, token_kept_ratio=case["ratio"], max_new_tokens=4, stop=())
    ttft = sum(reply.timings[k] for k in ("decode", "preprocess", "encode", "prefill"))
    return {"ttft_s": ttft, "encode_s": reply.timings["encode"], "prefill_s": reply.timings["prefill"],
            **reply.visual_tokens[0], "prompt_tokens": reply.prompt_tokens}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--ratio", type=float, default=0.5)
    args = p.parse_args()
    base = dict(device=args.device, frames=args.frames)
    cases = [dict(base, name="pooling", pool=True, ratio=1.0),
             dict(base, name=f"pooling + ToMe {args.ratio}", pool=True, ratio=args.ratio),
             dict(base, name=f"ToMe {args.ratio}", pool=False, ratio=args.ratio)]
    rows = []
    for r in run_cases(__file__, cases, timeout=3600):
        rows.append({"reducers": r["case"]["name"], "patches": r["patches"], "after tower": r["encoder"],
                     "to LM": r["language_model"], "encode s": r["encode_s"], "prefill s": r["prefill_s"],
                     "time to first token s": r["ttft_s"], "peak RSS MB": r["peak_rss_mb"]})
    for row in rows:
        row["TTFT x vs pooling"] = rows[0]["time to first token s"] / row["time to first token s"]
    print(table(rows, ["reducers", "patches", "after tower", "to LM", "encode s", "prefill s", "time to first token s",
                       "TTFT x vs pooling", "peak RSS MB"]))
    print("saved", save("pllava_pooling", rows, args.out))


if __name__ == "__main__":
    if not case_main(run_case):
        main()
