"""Tiny random AuroraCap-architecture checkpoints, built locally (nothing is downloaded).

Used by the test suite and for trying the pipeline end to end before real weights are at hand:
`python -m aurora.testing.checkpoints OUT_DIR [--layout xtuner|hf] [--lm llama|qwen2]`. The
weights are random, so captions are noise; shapes, formats and code paths are the real ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from aurora.connectors.projector import MLPProjector
from aurora.models import save
from aurora.models.auroracap import build
from aurora.preset import Preset

CORPUS = [
    "USER: Describe the video in detail. ASSISTANT: A red circle moves left across a blue background.",
    "The camera pans right while a green square grows and a yellow triangle rotates.",
    "A short clip: two shapes, one static, on a striped background. The camera zooms in.",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat happens?<|im_end|>\n",
]
SPECIALS = {"llama": ["<unk>", "<s>", "</s>", "<pad>"], "qwen2": ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]}


def build_tokenizer(lm: str = "llama", vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a few sentences; Llama style adds BOS, Qwen2 does not."""
    specials = SPECIALS[lm]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    if lm == "llama":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>")


def build_sentencepiece_tokenizer(directory: str | Path, vocab_size: int = 400):
    """A Vicuna-style tokenizer: only tokenizer.model (SentencePiece BPE) + tokenizer_config.json."""
    import json

    import sentencepiece as spm
    from transformers import AutoTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_prefix=str(directory / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1, byte_fallback=True, minloglevel=2,
    )
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "add_eos_token": False, "legacy": False}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(directory)


def build_tiny(
    lm: str = "llama",
    vision: str = "clip",
    seed: int = 0,
    image_size: int = 64,
    patch_size: int = 8,
    vision_layers: int = 3,
    max_new_tokens: int = 12,
    tokenizer=None,
):
    """A random VideoLLM with transformers modules at test sizes (hidden 32-64, 2-3 layers)."""
    torch.manual_seed(seed)
    tokenizer = tokenizer or build_tokenizer(lm)
    vision_kwargs = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=vision_layers, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size,
    )
    if vision == "clip":
        tower = CLIPVisionModel(CLIPVisionConfig(**vision_kwargs))
    else:
        tower = SiglipVisionModel(SiglipVisionConfig(**vision_kwargs, vision_use_head=False))
    lm_kwargs = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if lm == "llama":
        language_model = LlamaForCausalLM(LlamaConfig(**lm_kwargs, bos_token_id=tokenizer.bos_token_id))
    else:
        language_model = Qwen2ForCausalLM(Qwen2Config(**lm_kwargs, tie_word_embeddings=True))
    projector = MLPProjector(32, 64)
    preset = Preset.of(
        image_size=image_size,
        num_frames=4,
        token_kept_ratio=0.8,
        template="vicuna" if lm == "llama" else "chatml",
        max_new_tokens=max_new_tokens,
        resize="shortest_edge_crop" if vision == "clip" else "squash",
        position_interpolation="auroracap" if vision == "clip" else "transformers",
        feature_layer=-2 if vision == "clip" else -1,
    )
    return build(tower.eval(), projector, language_model.eval(), tokenizer, preset).eval()


def save_tiny(out: str | Path, layout: str = "xtuner", **kwargs) -> Path:
    model = build_tiny(**kwargs)
    save(model, out, layout)
    return Path(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--layout", choices=("xtuner", "hf"), default="xtuner")
    parser.add_argument("--lm", choices=("llama", "qwen2"), default="llama")
    parser.add_argument("--vision", choices=("clip", "siglip"), default="clip")
    args = parser.parse_args(argv)
    print(save_tiny(args.out, layout=args.layout, lm=args.lm, vision=args.vision))


if __name__ == "__main__":
    main()
