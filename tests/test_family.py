"""A family is a composition of registered parts: a toy family assembled here from AuroraCap's
tower and language model, the pooling connector and the "one placeholder per video" layout
captions, trains a step through `aurora train`, and saves and loads back through the registry."""

import json
from dataclasses import replace

import pytest
import torch

import aurora
from aurora.connectors.pool import PooledConnector
from aurora.models import Family, auroracap, register, save
from aurora.testing.checkpoints import build_tiny
from aurora.testing.media import make_frames, write_video
from aurora.train import load_config, train


def build_toy():
    base = build_tiny(seed=3)  # CLIP tower (64 px, an 8x8 grid), Llama LM, Vicuna template
    preset = replace(base.preset, family="toy", template=replace(base.preset.template, layout="video"),
                     reducer=replace(base.preset.reducer, token_kept_ratio=1.0))
    connector = PooledConnector(base.connector, pooling_shape=(1, 4, 4))  # the video's mean, 4x4 tokens
    return auroracap.build(base.tower.model, connector, base.language_model, base.tokenizer, preset)


TOY = Family(name="toy", layouts=("xtuner",), detect=auroracap.detect, load=auroracap.load, save=auroracap.save,
             build=auroracap.build, default_preset=auroracap.default_preset)
register(TOY)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("toy") / "clip.mp4", make_frames(8), fps=8)


def test_toy_family_captions_with_one_block_per_video(clip):
    model = build_toy().eval()
    reply = model.caption(clip, max_new_tokens=4)
    assert reply.visual_tokens_per_frame == [16]  # one block of 1x4x4 pooled tokens
    text_only = model.tokenizer.encode("USER: <image>\nDescribe the video in detail. ASSISTANT:")
    placeholder = len(model.tokenizer.encode("<image>", add_special_tokens=False))
    assert reply.prompt_tokens == len(text_only) - placeholder + 16
    # the pooled block is the mean over frames of the projected grid, pooled 2x2 in space
    frames = model.load_frames(clip)
    with torch.no_grad():
        features = model.tower(model.transform(frames.array), 1.0).features  # (8, 64, C)
        expected = model.connector.projector(features).mean(0).view(8, 8, -1)
        expected = expected.view(4, 2, 4, 2, -1).mean((1, 3)).reshape(16, -1)
        torch.testing.assert_close(model.encode(model.transform(frames.array), 1.0)[0], expected, atol=1e-5, rtol=0)


def test_toy_family_saves_loads_and_trains_a_step(clip, tmp_path):
    model = build_toy().eval()
    save(model, tmp_path / "toy")  # the family's own layout, found again through the registry
    loaded = aurora.load(tmp_path / "toy")
    assert loaded.preset.family == "toy" and isinstance(loaded.connector, PooledConnector)
    assert loaded.caption(clip, max_new_tokens=6).text == model.caption(clip, max_new_tokens=6).text
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"video": str(clip), "conversations": [
        {"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": "A clip."}]}) + "\n")
    out = train(load_config(data=str(data), output_dir=str(tmp_path / "run"), model=str(tmp_path / "toy"),
                            train_parts=["connector"], token_kept_ratio=1.0, batch_size=1, max_steps=1, lr=1e-2, warmup_steps=0),
                progress=False)
    trained = aurora.load(out)
    assert trained.preset.family == "toy"
    before, after = loaded.connector.state_dict(), trained.connector.state_dict()
    assert not torch.equal(before["projector.model.0.weight"], after["projector.model.0.weight"])
    assert torch.equal(loaded.tower.model.embeddings.patch_embedding.weight,
                       trained.tower.model.embeddings.patch_embedding.weight)  # frozen part unchanged


def test_an_adapter_applies_at_load_time(clip, tmp_path, capsys):
    from aurora.adapters.lora import apply_lora, save_lora
    from aurora.cli import main

    model = build_tiny(seed=5).eval()
    save(model, tmp_path / "base")
    lora = apply_lora(model.language_model, rank=4, alpha=8, targets=("q_proj", "v_proj"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a fresh adapter is zero: make it change the answer
    save_lora(lora, tmp_path / "adapter")
    expected = model.caption(clip, max_new_tokens=8).text  # peft wrapped the LM's layers in place
    base = aurora.load(tmp_path / "base").caption(clip, max_new_tokens=8).text
    assert main(["caption", clip, "--model", str(tmp_path / "base"), "--adapter", str(tmp_path / "adapter"),
                 "--max-new-tokens", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["caption"] == expected != base
    assert main(["caption", clip, "--model", str(tmp_path / "base"), "--lora-alpha", "2"]) == 2
    assert "--lora-alpha scales an adapter" in capsys.readouterr().err
