"""Video-LLaMA's branches in one run: the vision branch with and without ToMe inside the EVA tower,
and the audio branch (filter banks + ImageBind audio encoder + audio Q-Former) on top.

    python benchmarks/video_llama_branches.py [--full] [--ratio 0.5]

Random weights (speed does not depend on them), 8 frames and 8 two-second clips of a generated
video with sound, batch 1. Default shapes are scaled down for CPUs (an EVA of width 704 and 20
layers, BERT-base Q-Formers, ImageBind's audio encoder at full size, a 4-layer LLaMA of width 1024);
`--full` uses the published EVA ViT-g/14 (1408 wide, 39 layers). Reports stage times as ratios to
the vision branch alone at ratio 1.0: preprocess (frames, filter banks), encode (both branches) and
time to first token.
"""

from __future__ import annotations

import numpy as np
import torch
from _harness import case_main, parser, run_cases, save, table

SMALL_EVA = dict(hidden_size=704, intermediate_size=3072, num_hidden_layers=20, num_attention_heads=8)
LLAMA = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16,
             num_key_value_heads=16, max_position_embeddings=4096)


def run_case(case: dict) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    from aurora.models.video_llama import AudioBranch, Shape, VisionBranch, build, default_preset
    from aurora.testing.checkpoints import build_tokenizer
    from aurora.testing.media import tone, write_video_with_audio

    device = torch.device(case["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    shape = Shape(vision={} if case["full"] else SMALL_EVA)
    tokenizer = build_tokenizer("llama")
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **LLAMA))
    width = LLAMA["hidden_size"]
    audio = AudioBranch(shape, width).to(device, dtype).eval() if case["audio"] else None
    model = build(VisionBranch(shape, width).to(device, dtype).eval(), audio, lm.to(device, dtype).eval(), tokenizer,
                  default_preset(case["audio"]), shape).eval()
    model.set_audio("on" if case["audio"] else "off")
    frames = np.random.default_rng(0).integers(0, 255, (128, 240, 320, 3), dtype=np.uint8)
    clip = write_video_with_audio("/tmp/aurora-bench-video-llama.mp4", frames, tone(16.0, 440, 48000, 0.3), fps=8)
    for _ in range(2):  # warm-up, then measured
        reply = model.caption(clip, token_kept_ratio=case["ratio"], max_new_tokens=4, stop=())
    ttft = sum(reply.timings[k] for k in ("decode", "preprocess", "encode", "prefill"))
    return {"ttft_s": ttft, "preprocess_s": reply.timings["preprocess"], "encode_s": reply.timings["encode"],
            **reply.visual_tokens[0], "prompt_tokens": reply.prompt_tokens}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the published EVA ViT-g/14 shape")
    p.add_argument("--ratio", type=float, default=0.5)
    args = p.parse_args()
    base = dict(device=args.device, full=args.full)
    cases = [dict(base, name="vision", audio=False, ratio=1.0),
             dict(base, name=f"vision, ToMe {args.ratio}", audio=False, ratio=args.ratio),
             dict(base, name="vision + audio", audio=True, ratio=1.0),
             dict(base, name=f"vision + audio, ToMe {args.ratio}", audio=True, ratio=args.ratio)]
    rows = []
    for r in run_cases(__file__, cases, timeout=3600):
        rows.append({"branches": r["case"]["name"], "patches": r["patches"], "after tower": r["encoder"],
                     "to LM": r["language_model"], "preprocess s": r["preprocess_s"], "encode s": r["encode_s"],
                     "time to first token s": r["ttft_s"], "peak RSS MB": r["peak_rss_mb"]})
    for row in rows:
        row["encode x vs vision"] = row["encode s"] / rows[0]["encode s"]
        row["TTFT x vs vision"] = row["time to first token s"] / rows[0]["time to first token s"]
    print(table(rows, ["branches", "patches", "after tower", "to LM", "preprocess s", "encode s", "encode x vs vision",
                       "time to first token s", "TTFT x vs vision", "peak RSS MB"]))
    print("saved", save("video_llama_branches", rows, args.out))


if __name__ == "__main__" and not case_main(run_case):
    main()
