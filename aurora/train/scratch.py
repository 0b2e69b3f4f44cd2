"""Build a small AuroraCap-architecture model from scratch: a ViT tower (with merging), the MLP
projector, a Llama-style LM, and a byte-level BPE tokenizer trained on the annotation text.

Everything is transformers' own modules, assembled by the AuroraCap family (`aurora.models.auroracap.build`), so the
result saves and loads like any AuroraCap checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from aurora.connectors.projector import MLPProjector
from aurora.errors import ConfigError
from aurora.preset import Preset
from aurora.vision.preprocess import TEMPORAL_CHANNELS, TEMPORAL_INPUTS
from aurora.vision.stem import VISION_STEMS, install_stem

LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


@dataclass
class ScratchConfig:
    image_size: int = 64
    patch_size: int = 8
    temporal_input: str = "difference"
    vision_stem: str = "patch"  # "conv" or "cnn": convolutions instead of the patchify one (aurora.vision.stem)
    vision_hidden: int = 96
    vision_layers: int = 4
    vision_heads: int = 4
    vision_mlp: int = 256
    lm_hidden: int = 128
    lm_layers: int = 3
    lm_heads: int = 4
    lm_mlp: int = 384
    vocab_size: int = 512
    max_positions: int = 1024
    num_frames: int = 8
    token_kept_ratio: float = 0.2  # the preset's inference default
    max_new_tokens: int = 128
    default_prompt: str = "Describe the video in detail."
    seed: int = 0
    # LLaVA JSON/JSONL whose conversations train the tokenizer (default: the training data); lets
    # an early stage on a narrow task still get a vocabulary for the later stages' text
    tokenizer_data: str | None = None

    def __post_init__(self):
        if self.temporal_input not in TEMPORAL_INPUTS:
            raise ConfigError(f"temporal_input must be one of {TEMPORAL_INPUTS}, got {self.temporal_input!r}")
        if self.vision_stem not in VISION_STEMS:
            raise ConfigError(f"vision_stem must be one of {VISION_STEMS}, got {self.vision_stem!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        for name in ("vision_hidden", "lm_hidden"):
            heads = getattr(self, name.replace("hidden", "heads"))
            if getattr(self, name) % heads:
                raise ConfigError(f"{name} must be divisible by its number of heads")

    def to_dict(self) -> dict:
        return asdict(self)


def train_tokenizer(texts, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes) with Llama's specials; BOS is added to each encoding."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=LLAMA_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", LLAMA_SPECIALS.index("<s>"))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def build_from_scratch(config: ScratchConfig, tokenizer):
    """A randomly initialised VideoLLM of the configured sizes."""
    from aurora.models.auroracap import build

    torch.manual_seed(config.seed)
    temporal_channels = TEMPORAL_CHANNELS[config.temporal_input]
    vision = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=config.vision_hidden, intermediate_size=config.vision_mlp, num_hidden_layers=config.vision_layers,
        num_attention_heads=config.vision_heads, image_size=config.image_size, patch_size=config.patch_size,
        num_channels=temporal_channels,
    ))
    install_stem(vision, config.vision_stem)
    language_model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.lm_hidden, intermediate_size=config.lm_mlp,
        num_hidden_layers=config.lm_layers, num_attention_heads=config.lm_heads, num_key_value_heads=config.lm_heads,
        max_position_embeddings=config.max_positions, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    projector = MLPProjector(config.vision_hidden, config.lm_hidden)
    preset = Preset.of(
        image_size=config.image_size, resize="squash", temporal_input=config.temporal_input, vision_stem=config.vision_stem,
        num_frames=config.num_frames, token_kept_ratio=config.token_kept_ratio, feature_layer=-1,
        position_interpolation="transformers", template="vicuna", default_prompt=config.default_prompt,
        max_new_tokens=config.max_new_tokens,
    )
    return build(vision, projector, language_model, tokenizer, preset)
