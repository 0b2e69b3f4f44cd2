"""Apollo's vision stage with ToMe on its SigLIP tower: seconds to encode clips (both towers, the
resize and the Perceiver connector) at token kept ratio 1.0, 0.5 and 0.25, in one run.

    python benchmarks/apollo_towers.py [--clips 2] [--small]

Random weights at the published shapes (SigLIP so400m-384 per frame, InternVideo2-1B per 4-frame
clip at 224, a Qwen2-7B-width connector with 32 output tokens per clip); `--small` divides widths by
4 and depths by 3 so it finishes quickly on a CPU. ToMe merges inside SigLIP only; the merged tokens
go back on its 27x27 grid (Apollo resizes the grids), so the language model gets the same 32 tokens
per clip and only the SigLIP tower gets cheaper. Reports SigLIP tokens after merging and seconds, as
ratios to ratio 1.0.
"""

from __future__ import annotations

import numpy as np
import torch
from _harness import case_main, parser, run_cases, save, table, timed
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from aurora import media
from aurora.connectors.resampler import PerceiverConnector
from aurora.models.apollo import Apollo, ApolloVision, InternVideo2ClipTower, SiglipClipTower, default_preset
from aurora.testing.checkpoints import build_tokenizer
from aurora.vision.internvideo2 import InternVideo2, InternVideo2Config

SIGLIP = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384,
              patch_size=14)
IV2 = dict(img_size=224, patch_size=14, num_frames=4, d_model=1408, depth=40, num_heads=16)
TEXT, TOKENS = 3584, 32


def shapes(small: bool):
    if not small:
        return SIGLIP, IV2, TEXT
    siglip = dict(SIGLIP, hidden_size=288, intermediate_size=1076, num_hidden_layers=9, num_attention_heads=4)
    return siglip, dict(IV2, d_model=352, depth=13, num_heads=4), TEXT // 4


def run_case(case: dict) -> dict:
    device = torch.device(case["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    siglip, iv2, text = shapes(case["small"])
    vision = ApolloVision({"siglip": SiglipClipTower(SiglipVisionModel(SiglipVisionConfig(**siglip)), -2),
                           "internvideo2": InternVideo2ClipTower(InternVideo2(InternVideo2Config(**iv2)), -2)})
    connector = PerceiverConnector(dict(vision_hidden_size=[siglip["hidden_size"], iv2["d_model"]], text_hidden_size=text,
                                        projector_type="mlp2x_gelu", num_output_tokens=TOKENS, resampler_depth=1,
                                        resampler_n_heads=text // 128, resampler_head_dim=128, num_key_value_heads=text // 128,
                                        ff_multi=4, hidden_act="silu"))
    tokenizer = build_tokenizer("qwen2")  # a tiny LM: encode never reaches it
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=text, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=text // 128, num_key_value_heads=1))
    model = Apollo(vision, connector, lm, tokenizer, default_preset(), clip_duration=2, model_max_length=16384)
    model = model.to(device, dtype).eval()
    n = case["clips"] * 4
    array = np.random.default_rng(0).integers(0, 256, (n, 360, 640, 3), dtype=np.uint8)
    frames = media.Frames(array, list(range(n)), [i / 2 for i in range(n)], n, 2.0, n / 2, "bench", False,
                          clips=[(2.0 * k, 2.0 * k + 1.5) for k in range(case["clips"])])
    with torch.inference_mode():
        blocks, counts = model.encode_counted(frames, case["ratio"])
        timing = timed(lambda: model.encode_counted(frames, case["ratio"]), warmup=0, repeats=case["repeats"])
    return {"encode_s": timing["median_s"], "blocks": list(blocks.shape), **counts}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--small", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    base = dict(device=args.device, clips=args.clips, small=args.small, repeats=args.repeats)
    rows = []
    for r in run_cases(__file__, [dict(base, ratio=ratio) for ratio in (1.0, 0.5, 0.25)], timeout=3600):
        rows.append({"ratio": r["case"]["ratio"], "patches": r["patches"], "after towers": r["encoder"],
                     "to LM": r["language_model"], "encode s": r["encode_s"], "peak RSS MB": r["peak_rss_mb"]})
    for row in rows:
        row["speed x vs 1.0"] = rows[0]["encode s"] / row["encode s"]
    print(table(rows, ["ratio", "patches", "after towers", "to LM", "encode s", "speed x vs 1.0", "peak RSS MB"]))
    print("saved", save("apollo_towers_small" if args.small else "apollo_towers", rows, args.out))


if __name__ == "__main__":
    if not case_main(run_case):
        main()
