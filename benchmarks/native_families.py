"""transformers-native families: Aurora's token reduction against transformers' own pipeline.

    python benchmarks/native_families.py [--frames 8,32] [--ratios 0.5,0.25,0.1] [--new-tokens 16]
                                         [--families qwen2_vl,smolvlm,...] [--layers N | --quick]
                                         [--reductions tome,reuse]

Per family, a checkpoint with random weights (speed does not depend on them) at realistic widths is
built from transformers' config classes, saved to a temporary folder and loaded with `aurora.load`,
so whatever family is registered for its model_type runs it; a model_type no family reads is
reported as "not available" and skipped. Shapes:
- qwen2_vl: Qwen2-VL-2B (ViT embed 1280, 32 layers, 16 heads, patch 14, 2x2 merger; its LM:
  hidden 1536, 28 layers, 12 heads / 2 KV, intermediate 8960).
- smolvlm: SigLIP-so400m widths (1152, 16 heads, 4304, 27 layers) at SmolVLM2's 512 px square
  with patch 16 and a 4x4 pixel shuffle (64 tokens a frame); a Qwen2-0.5B-shaped Llama LM (896,
  14 heads / 2 KV, 4864, 24 layers).
- llava_onevision: SigLIP-so400m-384 (patch 14) and a Qwen2-0.5B LM; llava_next_video: CLIP
  ViT-L/14-336 and a Qwen2-0.5B LM (run once their families are registered).
`--layers N` (`--quick`: 1) cuts every stack (tower and LM) to N layers, widths kept; the output
names the depth used.

Each case runs in its own process on the same decoded frames (360x480, batch 1, greedy, EOS
suppressed so every run generates `--new-tokens` tokens; warmed up on one frame; the fastest of
`--repeats` runs is kept). The baseline,
"transformers", is the family's transformers model's own `generate` on the inputs Aurora prepares
at ratio 1.0 (ids + pixels: what transformers' processor makes); Aurora runs `model.caption` at
ratio 1.0 (equal work: it should match the baseline within noise) and at each ratio with each
reducer method of `--reductions` that the family implements ("tome": merging in the tower, then the
family's pooling and a selection; "reuse": the tower computes frame 0 and only the ratio's share of
later patches that changed most, see aurora/vision/reuse.py). The frames are a slow pan over noise:
every patch changes from frame to frame, so "reuse" is held to its budget and gains nothing from
exact repeats (speed does not depend on content there; quality would, and random weights cannot
show it). Reported:
visual tokens reaching the LM, time to first token (the model's: vision encoding, any reduction
and the prefill; preprocessing is shown apart and is the same for both), total time, and each
ratio's speed-up against the baseline. Targets (issue #15): >= 3x faster TTFT at 0.25 and >= 6x at
0.1 with 32 frames.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _harness import case_main, parser, run_cases, save, table

QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2)
QWEN2_VL_2B_LM = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                      num_key_value_heads=2)
SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
TARGETS = {0.25: 3.0, 0.1: 6.0, 0.05: 8.0}  # TTFT speed-up wanted at 32 frames (0.05: issue #21)
FAMILIES = ("qwen2_vl", "smolvlm", "llava_onevision", "llava_next_video")


def _tokenizer(tokens: list[str]):
    from aurora.testing.checkpoints import build_tokenizer

    tokenizer = build_tokenizer("qwen2")
    tokenizer.add_special_tokens({"additional_special_tokens": tokens})
    return tokenizer


def _cut(config: dict, layers: int | None, key: str = "num_hidden_layers") -> dict:
    return {**config, key: layers} if layers else config


def write_checkpoint(family: str, root: Path, layers: int | None) -> Path:
    """A random checkpoint of `family`'s transformers class at realistic widths, in transformers' layout."""
    import transformers

    torch.manual_seed(0)
    if family == "qwen2_vl":
        from aurora.models.qwen2_vl import VISUAL_TOKENS

        tokenizer = _tokenizer(list(VISUAL_TOKENS))
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISUAL_TOKENS}
        config = transformers.Qwen2VLConfig(
            vision_config=_cut(dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536), layers, "depth"),
            text_config=dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, **_cut(QWEN2_VL_2B_LM, layers),
                             rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}),
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
        model = transformers.Qwen2VLForConditionalGeneration(config)
    elif family == "smolvlm":
        from aurora.models.smolvlm import VISUAL_TOKENS, default_chat_template

        tokenizer = _tokenizer(list(VISUAL_TOKENS) + ["<end_of_utterance>"])
        tokenizer.chat_template = default_chat_template()
        config = transformers.SmolVLMConfig(
            vision_config=dict(image_size=512, patch_size=16, **_cut(SO400M, layers)),
            text_config=dict(model_type="llama", vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, **_cut(QWEN2_05B, layers)),
            scale_factor=4, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
        model = transformers.SmolVLMForConditionalGeneration(config)
    elif family == "llava_onevision":
        tokenizer = _tokenizer(["<image>", "<video>"])
        config = transformers.LlavaOnevisionConfig(
            vision_config=dict(model_type="siglip_vision_model", image_size=384, patch_size=14, vision_use_head=False,
                               **_cut(SO400M, layers)),
            text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), **_cut(QWEN2_05B, layers)),
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), video_token_id=tokenizer.convert_tokens_to_ids("<video>"))
        model = transformers.LlavaOnevisionForConditionalGeneration(config)
    elif family == "llava_next_video":
        tokenizer = _tokenizer(["<image>", "<video>"])
        config = transformers.LlavaNextVideoConfig(
            vision_config=dict(model_type="clip_vision_model", image_size=336, patch_size=14, hidden_size=1024,
                               intermediate_size=4096, num_attention_heads=16, projection_dim=768,
                               num_hidden_layers=layers or 24),
            text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), **_cut(QWEN2_05B, layers)),
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"), video_token_id=tokenizer.convert_tokens_to_ids("<video>"))
        model = transformers.LlavaNextVideoForConditionalGeneration(config)
    else:
        raise SystemExit(f"unknown family {family!r}: choose from {', '.join(FAMILIES)}")
    model.eval().save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def frames_of(count: int):
    from aurora import media

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (360, 480, 3), dtype=np.uint8)
    array = np.stack([np.roll(base, 8 * i, axis=1) for i in range(count)])  # a slow pan
    times = [i * 0.5 for i in range(count)]
    return media.Frames(array, list(range(count)), times, count, 2.0, count * 0.5, "", False)


class FirstToken:
    """A generate() streamer that notes when the first new token arrives."""

    def __init__(self, prompt_ids: bool):
        self.skip, self.first = prompt_ids, None

    def put(self, value):
        if self.skip:  # models fed input_ids get the prompt first
            self.skip = False
        elif self.first is None:
            self.first = time.perf_counter()

    def end(self):
        pass


def run_case(case: dict) -> dict:
    import aurora

    torch.set_grad_enabled(False)
    model = aurora.load(case["path"], device=case["device"])
    eos = model.generator.stop_token_ids()
    model.generator.suppressed_token_ids = model.generator.suppressed_token_ids + eos  # exactly --new-tokens tokens
    messages = model._caption_messages(frames_of(case["frames"]), "Describe the video in detail.")
    if case.get("reduction"):
        model.preset.reducer.method = case["reduction"]
    if case.get("schedule") and hasattr(model, "tower"):  # a ToMe tower's merge schedule (constant: AuroraCap's)
        model.tower.merge_schedule = case["schedule"]
    model.caption(frames_of(1), max_new_tokens=1)  # warm-up
    runs = [_measure(model, messages, case) for _ in range(case["repeats"])]
    best = min(runs, key=lambda run: run["ttft_s"])  # the least disturbed run (shared machines are noisy)
    merging = case["impl"] == "aurora" and case["ratio"] < 1 and hasattr(model, "tower") and case.get("reduction") != "reuse"
    return {**best, "schedule": model.tower.merge_schedule if merging else ""}


def _measure(model, messages, case) -> dict:
    sync = torch.cuda.synchronize if case["device"].startswith("cuda") else (lambda: None)
    if case["impl"] == "transformers":
        start = time.perf_counter()
        if hasattr(model, "video_processor"):  # LLaVA-style: Aurora feeds embeddings; transformers takes pixels
            batch, reply, start = _llava_pixel_inputs(model, messages)
        else:
            inputs, reply = model.prepare(messages, token_kept_ratio=1.0)
            batch = model.collate([inputs])
        preprocess = time.perf_counter() - start
        streamer = FirstToken("input_ids" in batch)
        start = time.perf_counter()
        out = model.model.generate(**batch, max_new_tokens=case["new_tokens"], min_new_tokens=case["new_tokens"],
                                   do_sample=False, streamer=streamer, suppress_tokens=model.generator.suppressed_token_ids)
        sync()
        end = time.perf_counter()
        generated = out.shape[-1] - (batch["input_ids"].shape[-1] if "input_ids" in batch else 0)
        ttft, total = streamer.first - start, end - start
        lm_tokens = sum(v["language_model"] for v in reply.visual_tokens)
        prompt = reply.prompt_tokens
    else:
        reply = model.caption(messages[0]["content"][0]["video"], prompt="Describe the video in detail.",
                              token_kept_ratio=case["ratio"], max_new_tokens=case["new_tokens"], stop=())
        t = reply.timings
        preprocess, ttft = t["decode"] + t["preprocess"], t["encode"] + t["prefill"]
        total, generated = ttft + t["generate"], reply.generated_tokens
        lm_tokens, prompt = sum(v["language_model"] for v in reply.visual_tokens), reply.prompt_tokens
    return {"preprocess_s": preprocess, "ttft_s": ttft, "total_s": total, "generated": generated,
            "lm_visual_tokens": lm_tokens, "prompt_tokens": prompt}


def _llava_pixel_inputs(model, messages) -> tuple[dict, object, float]:
    """transformers' own inputs for a LLaVA-OneVision / NeXT-Video video: the prompt's ids with the
    video token once per feature and the processed frames (its tower runs inside generate, timed
    there); returns them, the untimed Reply of Aurora's full path (token counts) and when the timed
    preprocessing started."""
    from aurora.models.reply import Reply
    from aurora.models.video_llm import STAGES

    _, reply = model.prepare(messages, token_kept_ratio=1.0)  # untimed: how many tokens the video takes
    start = time.perf_counter()
    visuals = []
    read = model.read_messages(messages, None, None, Reply(text="", model="", timings=dict.fromkeys(STAGES, 0.0)), lambda f: visuals.append(f) or 1)
    prompt, from_template = model.render(read, None)
    ids = torch.tensor([model.prompt_ids(prompt, [("video", reply.visual_tokens_per_frame[0])], from_template)])
    pixels = model.video_processor(visuals[0].array)[None].to(model.device, model.model.dtype)
    batch = {"input_ids": ids.to(model.device), "attention_mask": torch.ones_like(ids).to(model.device),
             "pixel_values_videos": pixels}
    return batch, reply, start


def smolvlm_ttft_flops(frames: int, ratio: float, schedule: str, text_tokens: int = 715) -> float:
    """Model FLOPs to the first token of the full-depth SmolVLM shapes above (computed, noise-free):
    the so400m tower with ToMe at `ratio` (attention on the tokens a layer starts with, the MLP on
    what its merge leaves), or with schedule "reuse" frame 0 whole and round(ratio * 1024) computed
    patches in each later frame (each attending to the whole frame's 1024 keys); then the LM prefill
    over the kept visual tokens and the prompt's text."""
    from aurora.vision.merge import merge_count, merge_schedule, tokens_after_merging

    h, m, layers, patches = SO400M["hidden_size"], SO400M["intermediate_size"], SO400M["num_hidden_layers"], 1024

    def computed(n: int) -> float:  # n patches through the whole tower against the frame's keys
        return 2 * n * 3 * 16 * 16 * h + layers * (2 * n * 4 * h * h + 2 * 2 * n * patches * h + 2 * 2 * n * h * m)

    if schedule == "reuse":
        tower = (computed(patches) + (frames - 1) * computed(round(ratio * patches))) / frames
    else:
        tower, n = 2 * patches * 3 * 16 * 16 * h, patches
        for r in merge_schedule(merge_count(patches, ratio, layers), layers, schedule):
            after = tokens_after_merging(n, [r], 0)
            tower += 2 * n * 4 * h * h + 2 * 2 * n * n * h + 2 * 2 * after * h * m
            n = after
    lm, tokens = QWEN2_05B, round(ratio * frames * 64) + text_tokens
    h, kv = lm["hidden_size"], lm["hidden_size"] * lm["num_key_value_heads"] // lm["num_attention_heads"]
    per_token = lm["num_hidden_layers"] * (2 * h * (2 * h + 2 * kv) + 2 * 3 * h * lm["intermediate_size"])
    return frames * tower + tokens * per_token + lm["num_hidden_layers"] * 2 * tokens * tokens * h


def reductions_of(path: Path) -> tuple[str, ...]:
    """The reducer methods the family registered for this checkpoint implements."""
    from aurora.models import registry

    family = registry.detect(path)[0]
    cls = type(family.load(path, family.layouts[0]))
    return cls.reductions


def available(family: str, path: Path) -> str | None:
    """The registered family that reads this checkpoint, or None."""
    from aurora.errors import CheckpointError
    from aurora.models import registry

    try:
        return registry.detect(path)[0].name
    except CheckpointError:
        return None


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--families", default="qwen2_vl,smolvlm,llava_onevision,llava_next_video")
    p.add_argument("--frames", default="8,32")
    p.add_argument("--ratios", default="0.5,0.25,0.1")
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--layers", type=int, help="cut every tower and LM to this many layers (widths kept)")
    p.add_argument("--quick", action="store_true", help="--layers 1: a run finishes in minutes on a CPU")
    p.add_argument("--schedules", default="constant",
                   help="ToMe merge schedules to run below 1.0 (constant,decreasing) for families with a ToMe tower")
    p.add_argument("--reductions", default="tome,reuse",
                   help="reducer methods to run below 1.0, where the family implements them (tome,temporal,both,reuse)")
    p.add_argument("--repeats", type=int, default=2, help="measured runs per case; the fastest is kept")
    args = p.parse_args()
    layers = args.layers or (1 if args.quick else None)
    depth = f"{layers} layers per stack (widths kept)" if layers else "full depth"
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            path = write_checkpoint(family, Path(tmp) / family, layers)
            if (name := available(family, path)) is None:
                skipped.append(family)
                print(f"{family}: not available (no registered family reads model_type {family!r}); skipped", flush=True)
                continue
            implemented = reductions_of(path)
            for frames in (int(x) for x in args.frames.split(",")):
                base = dict(device=args.device, frames=frames, new_tokens=args.new_tokens, path=str(path),
                            repeats=args.repeats)
                cases = [dict(base, impl="transformers", ratio=1.0)]
                ratios = [float(x) for x in args.ratios.split(",")]
                cases += [dict(base, impl="aurora", ratio=1.0)]
                methods = [m for m in args.reductions.split(",") if m in implemented]
                cases += [dict(base, impl="aurora", ratio=r, reduction=m, schedule=s if m != "reuse" else "")
                          for m in methods for s in (args.schedules.split(",") if m != "reuse" else [""]) for r in ratios]
                group = [{"family": name, "frames": frames, "impl": r["case"]["impl"], "ratio": r["case"]["ratio"],
                          "reduction": r["case"].get("reduction", ""),
                          **{k: v for k, v in r.items() if k != "case"}} for r in run_cases(__file__, cases, timeout=3600)]
                baseline = group[0]
                for row in group:
                    row["TTFT x vs transformers"] = baseline["ttft_s"] / row["ttft_s"]
                    row["total x vs transformers"] = baseline["total_s"] / row["total_s"]
                    want = TARGETS.get(row["ratio"]) if frames == 32 and row["impl"] == "aurora" else None
                    row["target"] = f">= {want:g}x: {'met' if row['TTFT x vs transformers'] >= want else 'not met'}" if want else ""
                rows += group
    print(f"\ndepth: {depth}; {args.new_tokens} new tokens; device {args.device}; best of {args.repeats} runs")
    print(table(rows, ["family", "frames", "impl", "ratio", "reduction", "schedule", "lm_visual_tokens", "prompt_tokens", "preprocess_s", "ttft_s",
                       "TTFT x vs transformers", "total_s", "total x vs transformers", "target"]))
    if skipped:
        print("not available:", ", ".join(skipped))
    if "smolvlm" in args.families.split(","):  # what the measured depth cannot show: ToMe over all 27 layers
        print("\nsmolvlm at full depth, computed model FLOPs to first token vs ratio 1.0 (no timing noise):")
        for frames in (int(x) for x in args.frames.split(",")):
            text = next((r["prompt_tokens"] - r["lm_visual_tokens"] for r in rows
                         if r["family"] == "smolvlm" and r["frames"] == frames), 715)  # the prompt's other tokens
            base = smolvlm_ttft_flops(frames, 1.0, "constant", text)
            print(f"  {frames} frames: " + ", ".join(f"{r:g} {s}: {base / smolvlm_ttft_flops(frames, r, s, text):.2f}x"
                                                   for s in ("constant", "decreasing", "reuse")
                                                   for r in (float(x) for x in args.ratios.split(","))))
    print("saved", save("native_families", [{"depth": depth, **row} for row in rows], args.out))


if __name__ == "__main__":
    if not case_main(run_case):
        main()
