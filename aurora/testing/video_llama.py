"""Tiny random Video-LLaMA checkpoints written with the published names (nothing is downloaded).

`write_published(out)` writes a decoder directory (tiny LLaMA + tokenizer) and the files Video-LLaMA
publishes or downloads, each `{"model": state_dict}` under its own key names: VL and AL branch
checkpoints, a BLIP-2 Q-Former file, a bare EVA file and a bare ImageBind file (with other
modalities' keys and the text-only weights Video-LLaMA ignores, so the key map must skip them).
The names here are written out from Video-LLaMA's, ImageBind's and LAVIS's modules independently
of `aurora.models.video_llama_weights`, which reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aurora.models.video_llama import AudioBranch, Shape, VisionBranch, build, default_preset
from aurora.testing.checkpoints import build_tokenizer

TINY = Shape(
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
                patch_size=14),
    qformer=dict(hidden_size=32, num_attention_heads=4, intermediate_size=64),
    frame_layers=2, frame_queries=4, video_queries=4, frame_positions=8,
    audio=dict(width=32, layers=2, heads=4, out_features=48), audio_queries=3, audio_positions=8,
)


def build_tiny(seed: int = 0, audio: bool = True, shape: Shape = TINY, template: str = "video_llama"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer("llama")
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id))
    vision, sound = VisionBranch(shape, 64), AudioBranch(shape, 64) if audio else None
    for module in (vision, sound):  # random, not the zero/one initialisation, so every weight matters
        for p in (module.parameters() if module is not None else []):
            p.data.normal_(0, 0.2)
    for layer in vision.tower.model.encoder.layers:  # EVA has q and v biases only: the key's stays zero
        bias = layer.self_attn.qkv.bias
        bias.data[bias.shape[0] // 3:2 * bias.shape[0] // 3] = 0
    preset = default_preset(audio)
    preset.vision.image_size = shape.vision.get("image_size", 224)
    preset.generation.max_new_tokens = 8
    preset.template.name = template
    return build(vision.eval(), sound.eval() if sound else None, lm.eval(), tokenizer, preset, shape).eval()


def _bert(prefix: str, qformer, extras: bool) -> dict:
    """Blip2QFormerModel weights under LAVIS's BERT names (+ the text-path weights when `extras`)."""
    out = {}
    for key, value in qformer.state_dict().items():
        name = key.replace(".attention.attention.", ".attention.self.").replace(".crossattention.attention.", ".crossattention.self.")
        name = "embeddings.LayerNorm." + key.split(".")[-1] if key.startswith("layernorm.") else name
        out[f"{prefix}.bert.{name}"] = value.clone()
    if extras:
        h = qformer.config.hidden_size
        out[f"{prefix}.bert.embeddings.word_embeddings.weight"] = torch.randn(30, h)
        out[f"{prefix}.bert.embeddings.position_embeddings.weight"] = torch.randn(16, h)
        out[f"{prefix}.bert.embeddings.position_ids"] = torch.arange(16)[None]
        for i in range(qformer.config.num_hidden_layers):
            out[f"{prefix}.bert.encoder.layer.{i}.intermediate.dense.weight"] = torch.randn(2 * h, h)
            out[f"{prefix}.bert.encoder.layer.{i}.output.LayerNorm.weight"] = torch.randn(h)
        out[f"{prefix}.cls.predictions.bias"] = torch.randn(30)
    return out


def _eva(vision) -> dict:
    """Blip2VisionModel weights under LAVIS's EVA names (no prefix, as eva_vit_g.pth), with the
    unused final norm and an extra block as the published file has."""
    model = vision.tower.model
    emb = model.embeddings
    out = {"cls_token": emb.class_embedding.clone(), "pos_embed": emb.position_embedding.clone(),
           "patch_embed.proj.weight": emb.patch_embedding.weight.clone(),
           "patch_embed.proj.bias": emb.patch_embedding.bias.clone()}
    for i, layer in enumerate(model.encoder.layers):
        c = layer.self_attn.qkv.bias.shape[0] // 3
        out |= {f"blocks.{i}.norm1.weight": layer.layer_norm1.weight, f"blocks.{i}.norm1.bias": layer.layer_norm1.bias,
                f"blocks.{i}.attn.qkv.weight": layer.self_attn.qkv.weight,
                f"blocks.{i}.attn.q_bias": layer.self_attn.qkv.bias[:c], f"blocks.{i}.attn.v_bias": layer.self_attn.qkv.bias[2 * c:],
                f"blocks.{i}.attn.proj.weight": layer.self_attn.projection.weight,
                f"blocks.{i}.attn.proj.bias": layer.self_attn.projection.bias,
                f"blocks.{i}.norm2.weight": layer.layer_norm2.weight, f"blocks.{i}.norm2.bias": layer.layer_norm2.bias,
                f"blocks.{i}.mlp.fc1.weight": layer.mlp.fc1.weight, f"blocks.{i}.mlp.fc1.bias": layer.mlp.fc1.bias,
                f"blocks.{i}.mlp.fc2.weight": layer.mlp.fc2.weight, f"blocks.{i}.mlp.fc2.bias": layer.mlp.fc2.bias}
    out["norm.weight"] = torch.ones(emb.class_embedding.shape[-1])
    return {k: v.detach().clone() for k, v in out.items()}


def published_files(model) -> dict[str, dict]:
    """The model's weights as Video-LLaMA's files: name -> state dict."""
    vision = model.vision
    vl = {"video_query_tokens": vision.video.queries, "video_frame_position_embedding.weight": vision.video.position.weight,
          "llama_proj.weight": vision.video.proj.weight, "llama_proj.bias": vision.video.proj.bias}
    vl = {k: v.detach().clone() for k, v in vl.items()} | _bert("video_Qformer", vision.video.qformer, extras=False)
    blip2 = {"query_tokens": vision.frames.queries.detach().clone(),
             "ln_vision.weight": vision.tower.model.post_layernorm.weight.detach().clone(),
             "ln_vision.bias": vision.tower.model.post_layernorm.bias.detach().clone(),
             "vision_proj.weight": torch.randn(8, 32), "temp": torch.tensor(0.07)}
    blip2 |= _bert("Qformer", vision.frames.qformer, extras=True)
    files = {"VL_LLaMA_2_7B_Finetuned.pth": vl, "blip2_pretrained_flant5xxl.pth": blip2, "eva_vit_g.pth": _eva(vision)}
    if model.audio is not None:
        clips = model.audio.clips
        al = {"audio_query_tokens": clips.queries, "audio_position_embedding.weight": clips.position.weight,
              "audio_llama_proj.weight": clips.proj.weight, "audio_llama_proj.bias": clips.proj.bias}
        al = {k: v.detach().clone() for k, v in al.items()} | _bert("audio_Qformer", clips.qformer, extras=False)
        imagebind = {k: v.clone() for k, v in model.audio.encoder.state_dict().items()}  # ImageBind's own names
        imagebind["modality_trunks.vision.blocks.0.attn.in_proj_weight"] = torch.randn(24, 8)
        imagebind["modality_heads.text.proj.0.weight"] = torch.randn(8)
        files |= {"AL_LLaMA_2_7B_Finetuned.pth": al, "imagebind_huge.pth": imagebind}
    return files


def write_published(out: str | Path, seed: int = 0, audio: bool = True, config: bool = False):
    """A decoder directory and the published weight files in `out`; returns (model, paths by name).
    `config=True` also writes `video_llama.json` naming the files, so `aurora.models.load(out)` reads it."""
    import json

    from aurora.models.weights import quiet_transformers

    out = Path(out)
    model = build_tiny(seed, audio)
    with quiet_transformers():
        model.language_model.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    paths = {}
    for name, state in published_files(model).items():
        paths[name] = out / name
        torch.save({"model": state}, paths[name])
    if config:
        vl = ["VL_LLaMA_2_7B_Finetuned.pth", "blip2_pretrained_flant5xxl.pth", "eva_vit_g.pth"]
        al = ["AL_LLaMA_2_7B_Finetuned.pth", "imagebind_huge.pth"] if audio else []
        shape = {k: v for k, v in TINY.__dict__.items()}
        (out / "video_llama.json").write_text(json.dumps({"vl_weights": vl, "al_weights": al, "shape": shape}))
    return model, paths
