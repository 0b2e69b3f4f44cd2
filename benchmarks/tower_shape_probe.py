"""How fast can a from-scratch vision tower learn object shape? A probe for the default model's recipe.

    python benchmarks/tower_shape_probe.py [--data data/synth-train/train.jsonl] [--steps 600]

The default model (recipes/default_model.yaml) names colours, backgrounds and camera motion well but
object kinds near chance. This trains each candidate tower directly on the question it fails —
the kind of the one object in a frame of single-object synthetic clips (`aurora synth`; any of 8
frames of 85% of the clips to train, frame 0 of the rest to test), a linear head on the max over
the output tokens — and prints held-out accuracy. Baseline: a small CNN
(5 convolutions with batch norm), the inductive bias a patchify ViT lacks. Candidates: the
default model's ViT (4 layers, width 128, 8-px patches on 64 px) through Aurora's merging tower
at `--ratio`, and the same ViT with `vision_stem: conv` (aurora/vision/stem.py: three stride-2 3x3
convolutions with batch norm in place of the 8x8 patchify convolution) or `vision_stem: cnn` (five
3x3 convolutions, the first at full resolution, then a max pool to the same 8x8 grid).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from aurora import media
from aurora.vision.stem import install_stem
from aurora.vision.tower import MergingVisionTower

KINDS = ("circle", "square", "triangle", "star", "cross")


class ViTProbe(nn.Module):
    def __init__(self, ratio: float, stem: str):
        super().__init__()
        vit = CLIPVisionModel(CLIPVisionConfig(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                                               num_attention_heads=4, image_size=64, patch_size=8))
        install_stem(vit, stem)
        self.tower, self.ratio = MergingVisionTower(vit, feature_layer=-1, position_interpolation="transformers"), ratio
        self.head = nn.Linear(128, len(KINDS))

    def forward(self, pixels):
        return self.head(self.tower(pixels, self.ratio).features.max(dim=1).values)


def cnn() -> nn.Module:
    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.GELU()]

    return nn.Sequential(*block(3, 32, 1), *block(32, 64, 2), *block(64, 64, 1), *block(64, 128, 2),
                         nn.Conv2d(128, 128, 3, padding=1), nn.GELU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(128, len(KINDS)))


def load_frames(data: Path, clips: int, frames: int):
    """(clips, frames, 3, 64, 64) frames of the first `clips` single-object clips (objects that are
    there from the start), and their kinds."""
    records = []
    with open(data) as f:
        for line in f:
            record = json.loads(line)
            objects = record["attributes"]["objects"]
            if len(objects) == 1 and objects[0]["event"] != "appears":
                records.append(record)
            if len(records) == clips:
                break
    video = np.stack([media.load_visual(str(data.parent / r["video"]), num_frames=frames).array for r in records])
    pixels = torch.from_numpy(video).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    return pixels, torch.tensor([KINDS.index(r["attributes"]["objects"][0]["kind"]) for r in records])


def train_probe(model: nn.Module, pixels, kinds, steps: int, batch: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    split = int(len(kinds) * 0.85)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-3, weight_decay=0.01)
    curve, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        index = torch.randint(0, split, (batch,), generator=generator)
        frame = torch.randint(0, pixels.shape[1], (batch,), generator=generator)  # any frame of the clip
        loss = nn.functional.cross_entropy(model(pixels[index, frame]), kinds[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                accuracy = float((model(pixels[split:, 0]).argmax(1) == kinds[split:]).float().mean())
            model.train()
            curve.append({"step": step, "loss": float(loss.detach()), "accuracy": accuracy,
                          "seconds": time.perf_counter() - start})
    return curve


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synth-train/train.jsonl", help="an `aurora synth` JSONL")
    p.add_argument("--clips", type=int, default=3000)
    p.add_argument("--frames", type=int, default=8, help="frames per clip to train on (held-out clips: frame 0)")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ratio", type=float, default=0.2, help="token kept ratio of the ViT candidates")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/tower_shape_probe.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pixels, kinds = load_frames(Path(args.data), args.clips, args.frames)
    print(f"{len(kinds)} single-object clips, {int(len(kinds) * 0.85)} to train on ({args.frames} frames each), "
          f"the rest to test on (frame 0); chance {1 / len(KINDS):.0%}")
    cases = {"cnn (baseline)": cnn, f"vit, ratio {args.ratio}": lambda: ViTProbe(args.ratio, "patch"),
             f"vit + conv stem, ratio {args.ratio}": lambda: ViTProbe(args.ratio, "conv"),
             f"vit + cnn stem, ratio {args.ratio}": lambda: ViTProbe(args.ratio, "cnn")}
    results = {}
    for name, build in cases.items():
        torch.manual_seed(args.seed)
        results[name] = train_probe(build(), pixels, kinds, args.steps, args.batch, args.seed)
        print(name, " ".join(f"{c['step']}:{c['accuracy']:.2f}" for c in results[name]), flush=True)
    baseline = results["cnn (baseline)"][-1]["accuracy"]
    print(f"\n| tower | kind accuracy after {args.steps} steps | vs CNN | seconds |\n|---|---|---|---|")
    for name, curve in results.items():
        print(f"| {name} | {curve[-1]['accuracy']:.1%} | {curve[-1]['accuracy'] / baseline:.2f}x | {curve[-1]['seconds']:.0f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
