"""Vision encoder throughput (frames/s): transformers' own towers against Aurora's merging tower.

    python benchmarks/vision_tower.py [--frames 4] [--repeats 3]

ViT-L/14-336 (CLIP) and SigLIP-so400m-384 shapes with random weights (speed does not depend on
them). Baseline: `CLIPVisionModel` / `SiglipVisionModel` with output_hidden_states, as LLaVA-style
models call it. Aurora: `MergingVisionTower` at ratios 1.0, 0.4, 0.2, 0.1, on the second-to-last
layer for CLIP (AuroraCap; it skips the last layer, as the baseline's output would discard it) and
the last for SigLIP; the "same layers" row runs exactly the baseline's layers; "decreasing" rows
use the front-loaded merge schedule (same tokens out, fewer tokens through the later layers).
"""

from __future__ import annotations

import torch
from _harness import case_main, parser, run_cases, save, table, timed
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from aurora.vision.tower import MergingVisionTower

TOWERS = {
    "clip-vit-l-336": (CLIPVisionModel, CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                         num_attention_heads=16, image_size=336, patch_size=14), -2),
    "siglip-so400m-384": (SiglipVisionModel, SiglipVisionConfig(hidden_size=1152, intermediate_size=4304,
                                                                num_hidden_layers=27, num_attention_heads=16,
                                                                image_size=384, patch_size=14, vision_use_head=False), -1),
}


def run_case(case: dict) -> dict:
    cls, config, layer = TOWERS[case["tower"]]
    device = torch.device(case["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    model = cls(config).to(device, dtype).eval()
    pixels = torch.randn(case["frames"], 3, config.image_size, config.image_size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if case["impl"] == "transformers":
        def step():
            model(pixels, output_hidden_states=True).hidden_states[layer]
            sync()
    else:
        tower = MergingVisionTower(model, feature_layer=layer if case["impl"].startswith("aurora") and case["impl"] != "aurora-same-layers" else -1,
                                   merge_schedule="decreasing" if case["impl"] == "aurora-decreasing" else "constant")
        def step():
            tower(pixels, case["ratio"])
            sync()
    with torch.inference_mode():
        timing = timed(step, warmup=1, repeats=case["repeats"])
        tokens = None if case["impl"] == "transformers" else tower(pixels[:1], case["ratio"]).tokens_per_frame
    return {**timing, "frames_per_s": case["frames"] / timing["median_s"], "tokens_per_frame": tokens}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=None, help="frames per batch (default 2 on CPU, 32 on CUDA)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--towers", default=",".join(TOWERS))
    args = p.parse_args()
    frames = args.frames or (32 if args.device.startswith("cuda") else 2)
    rows = []
    for name in args.towers.split(","):
        base = dict(tower=name, device=args.device, frames=frames, repeats=args.repeats)
        cases = [dict(base, impl="transformers", ratio=1.0), dict(base, impl="aurora-same-layers", ratio=1.0)]
        cases += [dict(base, impl="aurora", ratio=r) for r in (1.0, 0.4, 0.2, 0.1)]
        cases += [dict(base, impl="aurora-decreasing", ratio=r) for r in (0.4, 0.2, 0.1)]
        results = run_cases(__file__, cases)
        baseline = results[0]["frames_per_s"]
        for r in results:
            c = r["case"]
            rows.append({"tower": name, "impl": c["impl"], "ratio": c["ratio"], "tokens/frame": r["tokens_per_frame"] or "all",
                         "frames/s": r["frames_per_s"], "x baseline": r["frames_per_s"] / baseline,
                         "peak RSS MB": r["peak_rss_mb"]})
    print(table(rows, ["tower", "impl", "ratio", "tokens/frame", "frames/s", "x baseline", "peak RSS MB"]))
    print("saved", save("vision_tower", rows, args.out))


if __name__ == "__main__":
    if not case_main(run_case):
        main()
