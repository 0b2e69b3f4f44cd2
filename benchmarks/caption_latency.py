"""End-to-end caption latency: transformers' LLaVA-OneVision pipeline against Aurora, same sizes.

    python benchmarks/caption_latency.py [--frames 8,16] [--new-tokens 64]

A Qwen2-0.5B-shaped language model and a SigLIP-so400m-384-shaped tower with random weights
(speed does not depend on them), batch 1. Stages: decode (PyAV), preprocess, encode (tower +
projector), prefill (time to first token) and decode tokens/s for `--new-tokens` tokens (EOS is
suppressed so every run generates the same count). Baselines, the same weights in transformers'
own classes: `LlavaForConditionalGeneration` with every frame as an image (no pooling: the same
tokens as Aurora at ratio 1.0, so equal work) and `LlavaOnevisionForConditionalGeneration` fed the
frames as a video (its own 2x2 pooling: 4x fewer tokens, less work). Aurora: a VideoLLM at token
kept ratio 1.0, and 0.2 with the constant (AuroraCap's) and the decreasing merge schedule.

Also reports the model FLOPs per caption (tower with its merge schedule, projector, prefill and
decode) and the fraction of this machine's measured matmul
peak that the prefill reaches.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _harness import case_main, parser, run_cases, save, table
from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config,
                          Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel)

from aurora.connectors.projector import MLPProjector
from aurora.models.auroracap import build
from aurora.preset import Preset
from aurora.testing.checkpoints import build_tokenizer

VISION = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384,
              patch_size=14, vision_use_head=False)
QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """Measured FLOP/s of a large square matmul on this device (the attainable peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    start, reps = time.perf_counter(), 5
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def lm_flops(config: dict, tokens: int, vocab: int) -> float:
    """Forward FLOPs of a decoder over `tokens` tokens (matmuls; attention scores included)."""
    h, m, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h * config["num_key_value_heads"] // config["num_attention_heads"]
    per_token = layers * (2 * h * (h + 2 * kv + h) + 2 * 3 * h * m) + 2 * h * vocab
    attention = layers * 2 * 2 * tokens * tokens * h / 2  # QK^T and AV, causal half
    return per_token * tokens + attention


def tower_flops(model, frames: int, ratio: float) -> float:
    """Forward FLOPs of the vision tower (+ projector) over `frames` frames at a token kept ratio,
    following the merge schedule: attention runs on the tokens a layer starts with, the MLP on what
    is left after that layer's merge."""
    from aurora.vision.merge import tokens_after_merging

    tower, size = model.tower, model.preset.vision.image_size
    cfg = tower.model.config
    h, m = cfg.hidden_size, cfg.intermediate_size
    n = (size // tower.patch_size) ** 2 + int(tower.has_cls)
    flops = 2 * n * (cfg.num_channels * tower.patch_size**2) * h  # patch embedding
    for r in tower.schedule(size, size, ratio):
        after = tokens_after_merging(n, [r], int(tower.has_cls))
        flops += 2 * n * 4 * h * h + 2 * 2 * n * n * h + 2 * 2 * after * h * m
        n = after
    out = tower.tokens_per_frame(size, size, ratio)
    lm_h = model.language_model.config.hidden_size
    return frames * (flops + 2 * out * (h * lm_h + lm_h * lm_h))


def decode_flops(config: dict, prompt: int, new: int, vocab: int) -> float:
    """Forward FLOPs of `new` decode steps after a `prompt`-token prefill (KV cache)."""
    h, m, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = h * config["num_key_value_heads"] // config["num_attention_heads"]
    per_token = layers * (2 * h * (h + 2 * kv + h) + 2 * 3 * h * m) + 2 * h * vocab
    return sum(per_token + layers * 2 * 2 * (prompt + i) * h for i in range(new))


def build_models(device, dtype):
    torch.manual_seed(0)
    tokenizer = build_tokenizer("qwen2")
    vision = SiglipVisionModel(SiglipVisionConfig(**VISION))
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), **QWEN2_05B))
    projector = MLPProjector(VISION["hidden_size"], QWEN2_05B["hidden_size"])
    preset = Preset.of(image_size=384, resize="squash", template="chatml", feature_layer=-1,
                    position_interpolation="transformers", num_frames=8)
    return build(vision.to(device, dtype), projector.to(device, dtype), lm.to(device, dtype), tokenizer, preset).eval()


def run_case(case: dict) -> dict:
    from aurora.testing.media import write_video

    device = torch.device(case["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = build_models(device, dtype)
    clip = f"/tmp/aurora-bench-latency-{case['frames']}.mp4"
    rng = np.random.default_rng(0)
    write_video(clip, rng.integers(0, 255, (64, 480, 640, 3), dtype=np.uint8), fps=8)
    new = case["new_tokens"]
    if case["impl"] == "aurora":
        model.tower.merge_schedule = case.get("schedule", "constant")
        result = {}
        for _ in range(2):  # warm-up, then measured
            reply = model.caption(clip, num_frames=case["frames"], token_kept_ratio=case["ratio"],
                                  max_new_tokens=new, stop=())
            result = reply.timings
        prompt_tokens = reply.prompt_tokens
        generated = reply.generated_tokens
    elif case["impl"] == "transformers-llava":
        result, prompt_tokens, generated = _llava(model, clip, case, device, dtype, sync)
    else:
        result, prompt_tokens, generated = _llava_onevision(model, clip, case, device, dtype, sync)
    peak = matmul_peak(device, dtype)
    vocab = len(model.tokenizer)
    flops = lm_flops(QWEN2_05B, prompt_tokens, vocab)
    # a pipeline that pools after the tower still runs the tower on every patch (ratio 1.0)
    ratio = case["ratio"] if case["impl"] == "aurora" else 1.0
    if case["impl"] == "aurora":
        model.tower.merge_schedule = case.get("schedule", "constant")
    caption = tower_flops(model, case["frames"], ratio) + flops + decode_flops(QWEN2_05B, prompt_tokens, generated, vocab)
    return {**result, "prompt_tokens": prompt_tokens, "generated": generated, "caption_tflops": caption / 1e12,
            "decode_tokens_per_s": (generated - 1) / result["generate"] if result["generate"] else None,
            "prefill_tflops": flops / 1e12, "prefill_fraction_of_peak": flops / result["prefill"] / peak,
            "matmul_peak_tflops": peak / 1e12}


class FirstTokenTimer:
    """A generate() streamer that notes when the first new token arrives (end of prefill)."""

    def __init__(self, sync):
        self.sync, self.first = sync, None

    def put(self, value):
        if self.first is None and value.numel() and value.shape[-1] == 1:
            self.sync()
            self.first = time.perf_counter()

    def end(self):
        pass


def _generate_timed(llava, inputs: dict, case, sync) -> tuple[dict, torch.Tensor]:
    timer = FirstTokenTimer(sync)
    start = time.perf_counter()
    out = llava.generate(**inputs, max_new_tokens=case["new_tokens"], min_new_tokens=case["new_tokens"],
                         do_sample=False, streamer=timer)
    sync()
    end = time.perf_counter()
    # encode happens inside prefill for transformers' pipelines
    return {"encode": 0.0, "prefill": timer.first - start, "generate": end - timer.first}, out


def _decode_and_preprocess(model, clip, case, device, dtype) -> tuple[torch.Tensor, dict]:
    """The frames as Aurora decodes and preprocesses them, timed; baselines get the same pixels."""
    from aurora import media

    start = time.perf_counter()
    frames = media.load_video(clip, num_frames=case["frames"])
    decoded = time.perf_counter()
    pixels = model.transform(frames.array).to(device, dtype)
    return pixels, {"decode": decoded - start, "preprocess": time.perf_counter() - decoded}


def _llava(model, clip, case, device, dtype, sync):
    """Equal work: the same weights as transformers' plain `LlavaForConditionalGeneration`, every
    frame an image of 729 tokens (no pooling): exactly the tokens Aurora reads at ratio 1.0."""
    from aurora.models.auroracap import as_hf_llava

    llava = as_hf_llava(model).to(device, dtype).eval()
    tokenizer, image = model.tokenizer, llava.config.image_token_index
    per_frame = llava.config.image_seq_length
    with torch.inference_mode():
        for _ in range(2):
            pixels, timings = _decode_and_preprocess(model, clip, case, device, dtype)  # (T, 3, 384, 384)
            ids = tokenizer.encode("<|im_start|>user\n")
            for _ in range(case["frames"]):
                ids += [image] * per_frame + tokenizer.encode("\n")
            ids += tokenizer.encode("Describe the video in detail.<|im_end|>\n<|im_start|>assistant\n")
            inputs = {"input_ids": torch.tensor([ids], device=device), "pixel_values": pixels}
            stages, out = _generate_timed(llava, inputs, case, sync)
            timings.update(stages)
    return timings, len(ids), out.shape[-1] - len(ids)


def _llava_onevision(model, clip, case, device, dtype, sync):
    """The same weights inside transformers' LlavaOnevisionForConditionalGeneration."""
    tokenizer = model.tokenizer
    tokenizer.add_tokens(["<image>", "<video>"], special_tokens=True)
    config = LlavaOnevisionConfig(vision_config=model.tower.config.to_dict(), text_config=model.language_model.config.to_dict(),
                                  video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
                                  image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                                  vision_feature_layer=-1, vision_feature_select_strategy="full")
    llava = LlavaOnevisionForConditionalGeneration(config).to(device, dtype).eval()
    llava.resize_token_embeddings(len(tokenizer))
    with torch.inference_mode():
        for _ in range(2):
            pixels, timings = _decode_and_preprocess(model, clip, case, device, dtype)
            pixels = pixels[None]  # one video: (1, T, 3, 384, 384)
            per_frame = (384 // 14 + 1) // 2  # bilinear 2x2 pooling of the 27 x 27 grid -> 14 x 14
            video_tokens = case["frames"] * per_frame * per_frame + 1  # + image_newline
            ids = tokenizer.encode("<|im_start|>user\n") + [config.video_token_id] * video_tokens
            ids += tokenizer.encode("\nDescribe the video in detail.<|im_end|>\n<|im_start|>assistant\n")
            inputs = {"input_ids": torch.tensor([ids], device=device), "pixel_values_videos": pixels}
            stages, out = _generate_timed(llava, inputs, case, sync)
            timings.update(stages)
    return timings, len(ids), out.shape[-1] - len(ids)


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--frames", default="8,16")
    p.add_argument("--new-tokens", type=int, default=64)
    args = p.parse_args()
    rows = []
    for frames in (int(x) for x in args.frames.split(",")):
        base = dict(device=args.device, frames=frames, new_tokens=args.new_tokens)
        cases = [dict(base, impl="transformers-llava", ratio=1.0),  # equal work: the baseline for ratio 1.0
                 dict(base, impl="transformers-llava-onevision", ratio=1.0),  # pools 2x2: 4x fewer tokens
                 dict(base, impl="aurora", ratio=1.0), dict(base, impl="aurora", ratio=0.2),
                 dict(base, impl="aurora", ratio=0.2, schedule="decreasing")]
        group = []
        for r in run_cases(__file__, cases, timeout=3600):
            c = r["case"]
            total = sum(r[k] for k in ("decode", "preprocess", "encode", "prefill", "generate"))
            ttft = sum(r[k] for k in ("decode", "preprocess", "encode", "prefill"))
            group.append({"frames": frames, "impl": c["impl"], "ratio": c["ratio"], "schedule": c.get("schedule", ""),
                          "prompt tokens": r["prompt_tokens"], "time to first token s": ttft,
                          "decode tok/s": r["decode_tokens_per_s"], "total s": total,
                          "prefill % of matmul peak": 100 * r["prefill_fraction_of_peak"], "peak RSS MB": r["peak_rss_mb"],
                          "model TFLOPs per caption": r["caption_tflops"],
                          "stages s": {k: round(r[k], 3) for k in ("decode", "preprocess", "encode", "prefill", "generate")}})
        llava = group[0]
        aurora_full = next(x for x in group if x["impl"] == "aurora" and x["ratio"] == 1.0)
        for x in group:
            x["TTFT x vs aurora 1.0"] = aurora_full["time to first token s"] / x["time to first token s"]
            x["total vs transformers-llava"] = x["total s"] / llava["total s"]
        rows += group
    print(table(rows, ["frames", "impl", "ratio", "schedule", "prompt tokens", "time to first token s", "TTFT x vs aurora 1.0",
                       "decode tok/s", "total s", "total vs transformers-llava", "model TFLOPs per caption", "prefill % of matmul peak",
                       "peak RSS MB"]))
    print("saved", save("caption_latency", rows, args.out))


if __name__ == "__main__":
    if not case_main(run_case):
        main()
