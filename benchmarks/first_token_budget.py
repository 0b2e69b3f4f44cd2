"""Where the first token's time goes with the bundled model at 32 frames, and how large a language
model would have to be for reducing tokens to make the first token 8x sooner (issue #21's target).

    python benchmarks/first_token_budget.py [--threads 1] [--repeats 5]

Measured: the bundled model captions one 32-frame 64 px clip (`max_new_tokens=1`) at 100% of the
visual tokens (`tome` at 1.0: nothing reduced) and at 5% with `both` and with `reuse`; the median
of `--repeats` warm runs per stage (decode, preprocess, encode, prefill). Then the same prompts'
prefill with larger Llama-shaped language models (random weights: speed does not depend on them)
in place of the bundled one, whose decode, preprocessing and encoder times are kept: the speed-up
each would give, and the ceiling with a language model that took no time at 5%. The baseline is
the same model at 100% in the same run, so the ratios hold on a noisy machine.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from _harness import parser, save, table
from transformers import LlamaConfig, LlamaForCausalLM

import aurora
from aurora.testing.media import make_frames, write_video

SETTINGS = [("100%", 1.0, "tome"), ("5% both", 0.05, "both"), ("5% reuse", 0.05, "reuse")]
STAGES = ("decode", "preprocess", "encode", "prefill")
# (hidden, layers, intermediate, heads): the bundled model's language model, then larger ones
LANGUAGE_MODELS = [(160, 3, 448, 4), (384, 6, 1024, 6), (512, 8, 1376, 8), (768, 12, 2048, 12)]


def stage_medians(model, clip: str, ratio: float, method: str, repeats: int) -> dict:
    """Median seconds per stage and the prompt length of captioning `clip` with one new token."""
    runs = [model.caption(clip, num_frames=32, token_kept_ratio=ratio, reduction=method, max_new_tokens=1)
            for _ in range(repeats + 1)][1:]  # the first run warms up
    medians = {stage: statistics.median(run.timings[stage] for run in runs) for stage in STAGES}
    return {**medians, "prompt_tokens": runs[0].prompt_tokens,
            "visual_tokens": runs[0].visual_tokens[0]["language_model"]}


def language_model(hidden: int, layers: int, intermediate: int, heads: int) -> LlamaForCausalLM:
    config = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=intermediate,
                         num_attention_heads=heads, num_key_value_heads=heads, vocab_size=479,
                         max_position_embeddings=4096)
    return LlamaForCausalLM(config).eval()


@torch.inference_mode()
def prefill_seconds(lm: LlamaForCausalLM, tokens: int, repeats: int) -> float:
    """Median seconds of `lm`'s prefill over `tokens` embeddings (after one warm-up run)."""
    embeds = torch.randn(1, tokens, lm.config.hidden_size)
    lm(inputs_embeds=embeds, logits_to_keep=1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        lm(inputs_embeds=embeds, logits_to_keep=1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the README's first-token figures)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = aurora.load()
    with tempfile.TemporaryDirectory() as tmp:
        clip = str(write_video(Path(tmp) / "clip.mp4", make_frames(32, 64, 64), fps=8))
        measured = {name: stage_medians(model, clip, ratio, method, args.repeats) for name, ratio, method in SETTINGS}

    rows = []
    for name, values in measured.items():
        total = sum(values[stage] for stage in STAGES)
        rows.append({"setting": name, **{f"{stage} ms": 1000 * values[stage] for stage in STAGES},
                     "first token ms": 1000 * total, "speed-up": sum(measured["100%"][s] for s in STAGES) / total,
                     "visual tokens": values["visual_tokens"]})
    print(table(rows, ["setting", "visual tokens", *[f"{s} ms" for s in STAGES], "first token ms", "speed-up"]))

    budget = []
    for hidden, layers, intermediate, heads in LANGUAGE_MODELS:
        lm = language_model(hidden, layers, intermediate, heads)
        row = {"language model": f"{hidden} wide, {layers} layers", "parameters (M)": lm.num_parameters() / 1e6}
        prefill = {name: prefill_seconds(lm, values["prompt_tokens"], args.repeats) for name, values in measured.items()}
        front = {name: sum(values[s] for s in ("decode", "preprocess", "encode")) for name, values in measured.items()}
        row["prefill 100% ms"] = 1000 * prefill["100%"]
        for name in ("5% both", "5% reuse"):
            row[f"speed-up {name}"] = (front["100%"] + prefill["100%"]) / (front[name] + prefill[name])
            row[f"ceiling {name}"] = (front["100%"] + prefill["100%"]) / front[name]  # an LM free at 5%
        budget.append(row)
    columns = ["language model", "parameters (M)", "prefill 100% ms", "speed-up 5% both", "ceiling 5% both",
               "speed-up 5% reuse", "ceiling 5% reuse"]
    print(table(budget, columns))
    print(save("first_token_budget", [{"threads": args.threads, "stages": measured, "settings": rows,
                                       "language_models": budget}], args.out))


if __name__ == "__main__":
    main()
