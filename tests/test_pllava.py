"""PLLaVA: a llava-hf LLaVA-NeXT base + PLLaVA's weights (LoRA + projector keys) give the logits
of an independent composition of transformers' LLaVA-NeXT modules, AdaptiveAvgPool3d and peft."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

import aurora
from aurora.errors import CheckpointError
from aurora.testing.checkpoints import build_tokenizer
from aurora.testing.media import make_frames, write_video

GRID, POOL = 8, (2, 4, 4)  # a 64 px tower with 8 px patches: an 8x8 grid per frame


@pytest.fixture(scope="module")
def pllava(tmp_path_factory):
    """A tiny LLaVA-NeXT base and a PLLaVA weights folder written with the published key names."""
    root = tmp_path_factory.mktemp("pllava")
    torch.manual_seed(0)
    tokenizer = build_tokenizer("llama")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              image_size=64, patch_size=8)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=len(tokenizer) - 1,
                             image_grid_pinpoints=[[64, 64]], vision_feature_layer=-2)
    base = LlavaNextForConditionalGeneration(config).eval()
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    weights = {}
    for name, param in base.model.language_model.named_parameters():
        if name.endswith(("q_proj.weight", "v_proj.weight")):
            stem = f"language_model.base_model.model.model.{name.removesuffix('.weight')}"
            weights[f"{stem}.lora_A.default.weight"] = torch.randn(8, param.shape[1]) * 0.1
            weights[f"{stem}.lora_B.default.weight"] = torch.randn(param.shape[0], 8) * 0.1
    for name, param in base.model.multi_modal_projector.named_parameters():
        weights[f"multi_modal_projector.{name}"] = torch.randn_like(param) * 0.1
    (root / "weights").mkdir()
    save_file(weights, root / "weights" / "model.safetensors")
    (root / "weights" / "config.json").write_text(json.dumps(
        {"model_type": "llava", "pooling_shape": list(POOL), "num_frames": 4, "pooling_method": "avg"}))
    return root, weights


def reference_logits(root, weights, pixels, prompt, alpha):
    """transformers' LLaVA-NeXT parts + AdaptiveAvgPool3d + peft LoRA, composed by hand."""
    base = LlavaNextForConditionalGeneration.from_pretrained(root / "base").eval()
    tokenizer = aurora.load(root / "base").tokenizer
    projector = base.model.multi_modal_projector
    projector.load_state_dict({k.removeprefix("multi_modal_projector."): v for k, v in weights.items()
                               if k.startswith("multi_modal_projector.")})
    lm = base.model.language_model
    peft_lm = get_peft_model(lm, LoraConfig(r=8, lora_alpha=alpha, target_modules=["q_proj", "v_proj"]))
    # PLLaVA's LM is a causal LM (keys ...base_model.model.model.layers...); here it is the bare LlamaModel
    lora = {k.replace("language_model.base_model.model.model.", "base_model.model."): v for k, v in weights.items()
            if k.startswith("language_model.")}
    assert not peft_lm.load_state_dict(lora, strict=False).unexpected_keys
    with torch.no_grad():
        features = base.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]  # (T, 64, C)
        projected = projector(features)  # (T, 64, D)
        grid = projected.permute(2, 0, 1).reshape(1, -1, pixels.shape[0], GRID, GRID)  # (1, D, T, 8, 8)
        video = torch.nn.AdaptiveAvgPool3d(POOL)(grid).flatten(2).transpose(1, 2)[0]  # (32, D)
        before, after = prompt.split("<image>")
        embed = lm.get_input_embeddings()
        tokens = [embed(torch.tensor(tokenizer.encode(before))), video,
                  embed(torch.tensor(tokenizer.encode(after, add_special_tokens=False)))]
        embeds = torch.cat(tokens)[None]
        hidden = peft_lm(inputs_embeds=embeds).last_hidden_state
        return base.lm_head(hidden)


@pytest.mark.parametrize("frames, alpha", [(4, 4), (16, 4), (2, 32), (1, 4)])  # 1: an image, repeated
def test_logits_equal_an_independent_composition(pllava, frames, alpha):
    root, weights = pllava
    model = aurora.load(root / "base", adapter=root / "weights", lora_alpha=None if alpha == 4 else alpha)
    pixels = torch.randn(frames, 3, 64, 64)
    prompt = "USER:<image> Describe the video. ASSISTANT:"
    with torch.no_grad():
        ours = model.language_model(inputs_embeds=model.embed_prompt(prompt, [model.encode(pixels, 1.0)])).logits
    if frames < 4:  # shorter clips are filled by repeating their frames in order (PLLaVA)
        pixels = pixels[torch.arange(4) % frames]
    torch.testing.assert_close(ours, reference_logits(root, weights, pixels, prompt, alpha), atol=1e-4, rtol=0)


def test_captions_a_video_and_an_image_with_one_placeholder(pllava, tmp_path):
    root, _ = pllava
    model = aurora.load(root / "base", adapter=root / "weights")
    assert (model.preset.media.num_frames, model.preset.media.sampling, model.connector.pooling_shape) == (4, "middle", POOL)
    clip = write_video(tmp_path / "clip.mp4", make_frames(12), fps=8)
    reply = model.caption(clip, max_new_tokens=3)
    assert reply.visual_tokens_per_frame == [32] and len(reply.frame_indices[0]) == 4
    from PIL import Image

    Image.fromarray(make_frames(1)[0]).save(tmp_path / "still.png")
    assert model.caption(tmp_path / "still.png", max_new_tokens=3).visual_tokens_per_frame == [32]  # repeated x4


def test_weights_round_trip_and_bad_input(pllava, tmp_path):
    root, _ = pllava
    model = aurora.load(root / "base", adapter=root / "weights")
    aurora.models.save(model, tmp_path / "out", "pllava-weights")  # LoRA + projector keys only
    again = aurora.load(root / "base", adapter=tmp_path / "out")
    pixels = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        a = model.language_model(inputs_embeds=model.embed_prompt("USER:<image> Hi ASSISTANT:", [model.encode(pixels, 1.0)])).logits
        b = again.language_model(inputs_embeds=again.embed_prompt("USER:<image> Hi ASSISTANT:", [again.encode(pixels, 1.0)])).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="pass its LLaVA-NeXT base as --model"):
        aurora.load(root / "weights")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    (tmp_path / "out" / "config.json").write_text(json.dumps({**config, "base_model": str(root / "base")}))
    named = aurora.load(tmp_path / "out")  # a weights folder that names its base loads alone
    with torch.no_grad():
        c = named.language_model(inputs_embeds=named.embed_prompt("USER:<image> Hi ASSISTANT:", [named.encode(pixels, 1.0)])).logits
    torch.testing.assert_close(a, c, atol=0, rtol=0)
    partial = tmp_path / "partial"
    partial.mkdir()
    from safetensors.torch import load_file

    kept = {k: v for k, v in load_file(root / "weights" / "model.safetensors").items() if "layers.1." not in k}
    save_file(kept, partial / "model.safetensors")
    with pytest.raises(CheckpointError, match="layers.1"):
        aurora.load(root / "base", adapter=partial)


def test_tome_inside_the_tower_composes_with_pooling(pllava, tmp_path):
    root, _ = pllava
    model = aurora.load(root / "base", adapter=root / "weights")
    clip = write_video(tmp_path / "clip.mp4", make_frames(12), fps=8)
    full = model.caption(clip, max_new_tokens=3)
    merged = model.caption(clip, max_new_tokens=3, token_kept_ratio=0.5)
    merged_per_frame = model.tower.tokens_per_frame(64, 64, 0.5)
    assert full.visual_tokens == [{"patches": 256, "encoder": 256, "language_model": 32}]
    assert merged.visual_tokens == [{"patches": 256, "encoder": 4 * merged_per_frame, "language_model": 32}]
    assert merged_per_frame < 64 and merged.text
    # pooling reads the merged tokens put back on the grid: each patch carries its token's features
    pixels = model.transform(model.load_frames(clip).array)
    with torch.no_grad():
        out = model.tower(pixels, 0.5, track_source=True)
        grid = out.features.gather(1, out.source[..., None].expand(-1, -1, out.features.shape[-1]))  # (4, 64, C)
        expected = model.connector(grid)
        torch.testing.assert_close(model.encode(pixels, 0.5), expected, atol=0, rtol=0)
        assert not torch.allclose(model.encode(pixels, 0.5), model.encode(pixels, 1.0))


def test_a_bad_adapter_or_pooling_is_one_line_exit_2(pllava, tmp_path, capsys):
    from aurora.cli import main

    root, _ = pllava
    clip = write_video(tmp_path / "clip.mp4", make_frames(12), fps=8)
    too_big = tmp_path / "too_big"
    too_big.mkdir()
    (too_big / "model.safetensors").write_bytes((root / "weights" / "model.safetensors").read_bytes())
    (too_big / "config.json").write_text(json.dumps({"model_type": "llava", "pooling_shape": [8, 4, 4], "num_frames": 4}))
    assert main(["caption", clip, "--model", str(root / "base"), "--adapter", str(too_big)]) == 2
    assert "pools more frames than num_frames" in capsys.readouterr().err
    (too_big / "config.json").write_text(json.dumps({"model_type": "llava", "pooling_shape": [4, 16, 16], "num_frames": 4}))
    assert main(["caption", clip, "--model", str(root / "base"), "--adapter", str(too_big)]) == 2
    err = capsys.readouterr().err
    assert "larger than the 4x8x8 token grid" in err and len(err.strip().splitlines()) == 1


def test_lora_fine_tuning_exports_both_layouts_with_equal_logits(pllava, tmp_path):
    from aurora.train import load_config, train

    root, _ = pllava
    clip = write_video(tmp_path / "clip.mp4", make_frames(12), fps=8)
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"video": str(clip), "conversations": [
        {"from": "human", "value": "<video>\nWhat is shown?"}, {"from": "gpt", "value": "A clip."}]}) + "\n")
    out = train(load_config(data=str(data), output_dir=str(tmp_path / "run"), model=str(root / "base"),
                            adapter=str(root / "weights"), train_parts=["connector"], lora_rank=8, token_kept_ratio=1.0,
                            batch_size=1, max_steps=2, lr=1e-2, warmup_steps=0), progress=False)
    whole = aurora.load(out)  # Aurora's layout: LoRA merged
    published = aurora.load(root / "base", adapter=tmp_path / "run" / "adapter")  # PLLaVA's layout on the base
    before = aurora.load(root / "base", adapter=root / "weights")
    pixels = torch.randn(4, 3, 64, 64)
    prompt = "USER:<image> What is shown? ASSISTANT:"

    def logits(model):
        with torch.no_grad():
            return model.language_model(inputs_embeds=model.embed_prompt(prompt, [model.encode(pixels, 1.0)])).logits

    torch.testing.assert_close(logits(whole), logits(published), atol=1e-4, rtol=0)
    assert not torch.allclose(logits(before), logits(published), atol=1e-4)  # the steps changed LoRA / projector
    assert torch.equal(before.tower.model.embeddings.patch_embedding.weight, whole.tower.model.embeddings.patch_embedding.weight)


def test_pllava_evaluation_prompts_are_the_published_ones(pllava, tmp_path):
    """PLLaVA's conv_eval_mvbench / conv_eval_videoqabench prompts (magic-research/PLLaVA,
    tasks/eval/eval_utils.py and the eval scripts), composed by hand from the published pieces."""
    from argparse import Namespace

    from aurora.eval import cli as eval_cli
    from aurora.eval.frames import load_frames
    from aurora.eval.predictors import AuroraPredictor
    from aurora.eval.tasks import mvbench, videoqa
    from aurora.generation import GenerationOptions

    root, _ = pllava
    model = aurora.load(root / "base", adapter=root / "weights")
    clip = write_video(tmp_path / "clip.mp4", make_frames(24), fps=8)
    seen = []
    prepare = model.prepare
    model.prepare = lambda messages, *a, **k: seen.append(prepare(messages, *a, **k)) or seen[-1]
    predictor = AuroraPredictor(model, options=GenerationOptions(max_new_tokens=1))
    args = Namespace(protocol="auto", num_frames=None, post_prompt="")
    assert eval_cli.resolve_protocol(mvbench, args, predictor) == "pllava"
    args.protocol = "pllava"
    question = "Question: What moves?\nOptions:\n(A) a ball\n(B) a cup"
    item = {"video": clip, "question": question, "answer": "(A) a ball", "kind": "video", "bound": None, "task": "x"}
    predictor.answer(mvbench.queries(item, args))
    system = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement "
              "of objects, and the action and pose of persons. Based on your observations, select the best option that "
              "accurately addresses the question.\n")
    expected = system + " USER: <image>\n USER: " + question + " \nOnly give the best option. ASSISTANT:Best option:("
    frames = load_frames(clip, mvbench.queries(item, args)[0].frames)
    with torch.no_grad():
        blocks = model.encode(model.transform(frames.array), 1.0)
        torch.testing.assert_close(seen[-1][0], model.embed_prompt(expected, [blocks]), atol=0, rtol=0)
    predictor.answer(videoqa.queries({"video": clip, "question": "What moves?"}, args))
    expected = ("USER: <image>\n The input consists of a sequence of key frames from a video. Answer the question concisely "
                "first and followed by significant events, characters, or objects that appear throughout the frames. "
                "Question: What moves? \n ASSISTANT:\nAnswer: In the video,")
    frames = model.load_frames(clip)
    with torch.no_grad():
        blocks = model.encode(model.transform(frames.array), 1.0)
        torch.testing.assert_close(seen[-1][0], model.embed_prompt(expected, [blocks]), atol=0, rtol=0)
    from aurora.eval.tasks import vcg

    vcg_query = vcg.queries({"video": clip, "questions": ["What happens?"]}, args)[0]
    predictor.answer([vcg_query])
    expected = ("You are Video-ChatGPT, a large vision-language assistant. You are able to understand the video content "
                "that the user provides, and assist the user with a variety of tasks using natural language.Follow the "
                "instructions carefully and explain your answers in detail based on the provided video."
                " USER: <image>\n USER: What happens? ASSISTANT:")
    with torch.no_grad():
        torch.testing.assert_close(seen[-1][0], model.embed_prompt(expected, [blocks]), atol=0, rtol=0)
    assert vcg_query.stop == ("###", "USER") and vcg_query.max_new_tokens == 512


def test_convert_writes_a_whole_model_and_a_mismatched_adapter_is_refused(pllava, tmp_path, capsys):
    from aurora.cli import main

    root, weights = pllava
    assert main(["convert", str(root / "base"), str(tmp_path / "whole"), "--adapter", str(root / "weights"),
                 "--to", "xtuner"]) == 0
    whole, published = aurora.load(tmp_path / "whole"), aurora.load(root / "base", adapter=root / "weights")
    pixels = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        a, b = (m.language_model(inputs_embeds=m.embed_prompt("USER:<image> Hi ASSISTANT:", [m.encode(pixels, 1.0)])).logits
                for m in (whole, published))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert main(["convert", str(root / "base"), str(tmp_path / "x"), "--to", "hf"]) == 2
    assert "written as xtuner or pllava-weights" in capsys.readouterr().err
    wrong = tmp_path / "wrong"  # an adapter for a wider model (another base)
    wrong.mkdir()
    save_file({k: torch.cat([v, v], dim=-1) if k.endswith("lora_A.default.weight") else v for k, v in weights.items()},
              wrong / "model.safetensors")
    clip = write_video(tmp_path / "clip.mp4", make_frames(8), fps=8)
    assert main(["caption", clip, "--model", str(root / "base"), "--adapter", str(wrong)]) == 2
    err = capsys.readouterr().err.strip()
    assert "lora_A" in err and len(err.splitlines()) == 1


def test_merging_across_time_runs_on_the_pooled_grid(pllava, tmp_path):
    from aurora.vision.temporal import merge_across_time

    root, _ = pllava
    model = aurora.load(root / "base", adapter=root / "weights")
    model.preset.reducer.method = "temporal"
    pixels = model.transform(make_frames(4))
    with torch.no_grad():
        blocks = model.encode(pixels, 0.5)
        pooled = model.connector(model.tower(pixels, 1.0).features)[0]  # (t'·h'·w', D)
    expected = merge_across_time(pooled.view(POOL[0], -1, pooled.shape[-1]), round(0.5 * pooled.shape[0]))
    assert len(blocks) == 1 and blocks[0].shape[0] == pooled.shape[0] // 2
    torch.testing.assert_close(blocks[0], expected.tokens, atol=0, rtol=0)
    clip = write_video(tmp_path / "clip.mp4", make_frames(12), fps=8)
    reply = model.caption(clip, max_new_tokens=3, token_kept_ratio=0.5)
    assert reply.visual_tokens == [{"patches": 256, "encoder": 256, "language_model": 16}] and reply.text


def test_reuse_skips_repeated_patches_before_pooling(pllava, tmp_path):
    """"reuse": the tower computes frame 0 and the changed patches, pooling reads the whole grid,
    and the pooled tokens merged over its time steps reach the LM."""
    from aurora.vision.temporal import merge_across_time

    root, _ = pllava
    model = aurora.load(root / "base", adapter=root / "weights")
    model.preset.reducer.method = "reuse"
    pixels = model.transform(model.load_frames(write_video(tmp_path / "clip.mp4", make_frames(12), fps=8)).array)
    with torch.no_grad():
        blocks, counts = model.encode_counted(pixels, 0.5)
        out, reuse = model.tower.forward_reused(pixels, 0.5)
        connected = model.connector(out.features)[0]
        pooled = connected.view(POOL[0], -1, connected.shape[-1])  # (time steps, places, D)
    assert counts == {"patches": 256, "encoder": int(reuse.computed.sum()), "language_model": 16}
    assert counts["encoder"] < 256
    torch.testing.assert_close(blocks[0], merge_across_time(pooled, 16).tokens, atol=0, rtol=0)
