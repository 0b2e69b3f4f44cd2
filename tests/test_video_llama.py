"""Video-LLaMA: parity with an independent composition (transformers' Blip2 modules + plain torch),
the published key maps, the audio-visual prompt, and bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import Blip2QFormerModel, Blip2VisionModel

from aurora import media
from aurora.errors import CheckpointError, ConfigError, MediaError
from aurora.media.fbank import load_audio_features
from aurora.models import DEFAULT_MODEL, load
from aurora.models.video_llama import load_published
from aurora.models.video_llama_weights import published_to_aurora
from aurora.testing.media import make_frames, tone, write_audio, write_video, write_video_with_audio
from aurora.testing.video_llama import TINY, write_published

VL = ("VL_LLaMA_2_7B_Finetuned.pth", "blip2_pretrained_flant5xxl.pth", "eva_vit_g.pth")
AL = ("AL_LLaMA_2_7B_Finetuned.pth", "imagebind_huge.pth")
QUESTION = "What happens?"
# conversation_video.py's audio-visual message, as its line continuations leave it
AV = ("Close your eyes, open your ears and you imagine only based on the sound that: <image>."
      "                Close your ears, open your eyes and you see that <Video><image></Video>.  "
      "                Now answer my question based on what you have just seen and heard.")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    out = tmp_path_factory.mktemp("video_llama")
    original, paths = write_published(out)
    model = load_published(out, [paths[n] for n in VL], [paths[n] for n in AL], shape=TINY)
    video = write_video_with_audio(out / "av.mp4", make_frames(16, 32, 32), tone(3.0, 440, 48000, 0.3), fps=8)
    silent = write_video(out / "silent.mp4", make_frames(16, 32, 32), fps=8)
    return {"dir": out, "paths": paths, "original": original, "model": model, "video": video, "silent": silent}


def ask(path, text=QUESTION):
    return [{"role": "user", "content": [{"type": "video", "video": str(path)}, {"type": "text", "text": text}]}]


# ---- the independent composition -----------------------------------------------------------------

def reference_vision(model, pixels: torch.Tensor) -> torch.Tensor:
    """Video-LLaMA's encode_videoQformer_visual with transformers' modules and plain torch."""
    branch = model.vision
    eva = Blip2VisionModel(branch.tower.model.config).eval()
    eva.load_state_dict(branch.tower.model.state_dict())
    eva.post_layernorm.eps = 1e-5  # LAVIS's ln_vision
    image_embeds = eva(pixel_values=pixels).last_hidden_state  # (T, 1 + P, C) after ln_vision

    def qformer(stage):
        module = Blip2QFormerModel(stage.qformer.config).eval()
        module.load_state_dict(stage.qformer.state_dict())
        return module

    t = pixels.shape[0]
    queries = branch.frames.queries.expand(t, -1, -1)
    frame_out = qformer(branch.frames)(query_embeds=queries, encoder_hidden_states=image_embeds,
                                       encoder_attention_mask=torch.ones(image_embeds.shape[:2], dtype=torch.long)).last_hidden_state
    hidden = frame_out[None] + branch.video.position.weight[:t][None, :, None, :]  # (1, T, Q, H)
    hidden = hidden.reshape(1, -1, hidden.shape[-1])
    video = qformer(branch.video)(query_embeds=branch.video.queries, encoder_hidden_states=hidden).last_hidden_state
    return video @ branch.video.proj.weight.T + branch.video.proj.bias  # (1, 32, D)


def reference_audio_encoder(state: dict, x: torch.Tensor, heads: int) -> torch.Tensor:
    """ImageBind's audio path written with plain tensor operations from its state dict."""
    def w(name):
        return state[name]

    pre, trunk = "modality_preprocessors.audio.", "modality_trunks.audio.blocks."
    tokens = F.conv2d(x, w(pre + "rgbt_stem.proj.0.weight"), stride=10).flatten(2).transpose(1, 2)
    c = tokens.shape[-1]
    tokens = F.layer_norm(tokens, (c,), w(pre + "rgbt_stem.norm_layer.weight"), w(pre + "rgbt_stem.norm_layer.bias"))
    tokens = torch.cat([w(pre + "cls_token").expand(len(x), -1, -1), tokens], 1) + w(pre + "pos_embedding_helper.pos_embed")
    blocks = sorted({int(k[len(trunk):].split(".")[0]) for k in state if k.startswith(trunk)})
    for i in blocks:
        b = f"{trunk}{i}."
        h = F.layer_norm(tokens, (c,), w(b + "norm_1.weight"), w(b + "norm_1.bias"), eps=1e-6)
        q, k, v = (h @ w(b + "attn.in_proj_weight").T + w(b + "attn.in_proj_bias")).chunk(3, dim=-1)
        k = torch.cat([k, w(b + "attn.bias_k").reshape(1, 1, c).expand(len(x), 1, c)], 1)  # the learned extra key
        v = torch.cat([v, w(b + "attn.bias_v").reshape(1, 1, c).expand(len(x), 1, c)], 1)
        split = lambda t: t.reshape(len(x), t.shape[1], heads, c // heads).transpose(1, 2)  # noqa: E731
        attention = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (c // heads) ** 0.5, dim=-1)
        out = (attention @ split(v)).transpose(1, 2).reshape(len(x), -1, c)
        tokens = tokens + out @ w(b + "attn.out_proj.weight").T + w(b + "attn.out_proj.bias")
        h = F.layer_norm(tokens, (c,), w(b + "norm_2.weight"), w(b + "norm_2.bias"), eps=1e-6)
        h = F.gelu(h @ w(b + "mlp.fc1.weight").T + w(b + "mlp.fc1.bias")) @ w(b + "mlp.fc2.weight").T + w(b + "mlp.fc2.bias")
        tokens = tokens + h
    head = "modality_heads.audio."
    cls = F.layer_norm(tokens[:, 0], (c,), w(head + "0.weight"), w(head + "0.bias"), eps=1e-6) @ w(head + "2.weight").T
    return F.normalize(cls, dim=-1) * w("modality_postprocessors.audio.1.log_logit_scale").exp()


def reference_audio(model, clips: torch.Tensor, imagebind_file) -> torch.Tensor:
    """Video-LLaMA's encode_audioQformer: ImageBind's embeddings (from its own file) + clip positions ->
    audio Q-Former -> projection."""
    stage = model.audio.clips
    imagebind = torch.load(imagebind_file, weights_only=True)["model"]
    embeddings = reference_audio_encoder(imagebind, clips, TINY.audio["heads"])  # (S, 1024)
    hidden = (embeddings + stage.position.weight[:len(clips)])[None]  # (1, S, 1024)
    module = Blip2QFormerModel(stage.qformer.config).eval()
    module.load_state_dict(stage.qformer.state_dict())
    out = module(query_embeds=stage.queries, encoder_hidden_states=hidden).last_hidden_state
    return out @ stage.proj.weight.T + stage.proj.bias


def reference_logits(model, prompt: str, blocks: list[torch.Tensor]) -> torch.Tensor:
    """Video-LLaMA's get_context_emb: the prompt split at the placeholders, BOS on the first piece only."""
    pieces = prompt.split("<image>")
    embed = model.language_model.get_input_embeddings()
    parts = []
    for i, piece in enumerate(pieces):
        ids = model.tokenizer(piece, add_special_tokens=i == 0).input_ids
        parts.append(embed(torch.tensor(ids)))
        if i < len(blocks):
            parts.append(blocks[i][0])
    return model.language_model(inputs_embeds=torch.cat(parts)[None]).logits


def model_logits(model, messages) -> tuple[torch.Tensor, object]:
    embeds, reply = model.prepare(messages)
    return model.language_model(inputs_embeds=embeds).logits, reply


@torch.no_grad()
def test_logits_equal_the_independent_composition_with_sound(published):
    model, video = published["model"], published["video"]
    model.set_audio("auto")
    frames = model.load_frames(video)
    pixels = model.transform(frames.array)
    clips = torch.from_numpy(load_audio_features(video))  # (8, 1, 128, 204), tested in test_media_fbank
    prompt = f"###Human: {AV} {QUESTION}###Assistant:"
    expected = reference_logits(model, prompt, [reference_audio(model, clips, published["paths"]["imagebind_huge.pth"]),
                                                  reference_vision(model, pixels)])
    logits, reply = model_logits(model, ask(video))
    assert reply.audio == ["used"]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_logits_equal_the_independent_composition_without_sound(published):
    model, video = published["model"], published["video"]
    model.set_audio("off")
    try:
        frames = model.load_frames(video)
        times = ", ".join(str(round(t, 1)) for t in frames.timestamps)
        prompt = (f"###Human: <Video><image></Video> The video contains 8 frames sampled at {times} seconds.  "
                  f"{QUESTION}###Assistant:")
        expected = reference_logits(model, prompt, [reference_vision(model, model.transform(frames.array))])
        logits, reply = model_logits(model, ask(video))
    finally:
        model.set_audio("auto")
    assert reply.audio == ["off"]
    assert frames.indices == [0, 2, 4, 6, 8, 10, 12, 14]  # np.arange(0, 16, 16 / 8), Video-LLaMA's load_video
    assert times == "0.0, 0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 1.8"
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_tome_merges_inside_the_eva_tower(published):
    model = published["model"]
    model.set_audio("off")
    try:
        _, full = model.prepare(ask(published["video"]), token_kept_ratio=1.0)
        _, merged = model.prepare(ask(published["video"]), token_kept_ratio=0.5)
    finally:
        model.set_audio("auto")
    full, merged = full.visual_tokens[0], merged.visual_tokens[0]
    assert full["encoder"] == full["patches"] == 8 * 4  # 28 px / 14: 2 x 2 patches per frame
    tower = model.vision.tower
    assert merged["encoder"] == 8 * (tower.tokens_per_frame(28, 28, 0.5) - 1) < full["encoder"]  # CLS kept, not counted
    assert merged["language_model"] == full["language_model"] == TINY.video_queries


def test_a_reduction_it_does_not_implement_is_one_line(published):
    model = published["model"]
    model.preset.reducer.method = "temporal"  # as --reduction temporal sets it
    try:
        with pytest.raises(ConfigError, match="reduction 'temporal' is not implemented for video_llama models: use tome"):
            model.prepare(ask(published["silent"]))
    finally:
        model.preset.reducer.method = "tome"


def test_stride_sampling_is_video_llamas():
    from aurora.media.sampling import stride_indices

    assert stride_indices(100, 8) == np.arange(0, 100, 100 / 8).astype(int).tolist() == [0, 12, 25, 37, 50, 62, 75, 87]
    assert stride_indices(5, 8) == [0, 1, 2, 3, 4]


def test_the_loaded_model_has_the_written_weights(published):
    loaded, original = published["model"].state_dict(), published["original"].state_dict()
    assert set(loaded) == set(original)
    for key, value in original.items():
        assert torch.equal(loaded[key], value), key


def test_every_published_name_has_a_place(published):
    """No key of the published files is unknown; the only skipped ones are those Video-LLaMA ignores."""
    skipped = []
    for name, path in published["paths"].items():
        for key in torch.load(path, weights_only=True)["model"]:
            branch, target = published_to_aurora(key)
            assert branch == ("audio" if name in AL else "vision"), key
            if target is None:
                skipped.append(key)
    kinds = {k.split(".")[0] if not k.startswith("blocks") else "eva-bias" for k in skipped}
    assert kinds == {"Qformer", "vision_proj", "temp", "norm", "eva-bias", "modality_trunks", "modality_heads"}
    assert published_to_aurora("Qformer.bert.encoder.layer.3.crossattention.self.key.weight") == (
        "vision", "vision.frames.qformer.encoder.layer.3.crossattention.attention.key.weight")
    assert published_to_aurora("video_Qformer.bert.embeddings.LayerNorm.bias") == ("vision", "vision.video.qformer.layernorm.bias")
    assert published_to_aurora("blocks.0.attn.proj.weight") == ("vision", "vision.tower.model.encoder.layers.0.self_attn.projection.weight")


def test_a_directory_config_and_the_aurora_layout_load(published, tmp_path):
    out = tmp_path / "published"
    original, _ = write_published(out, seed=1, config=True)
    model = load(out)
    assert model.preset.family == "video_llama" and model.audio is not None
    assert torch.equal(model.vision.video.proj.weight, original.vision.video.proj.weight)
    from aurora.models import save

    save(model, tmp_path / "saved")
    again = load(tmp_path / "saved")
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_a_file_for_the_wrong_branch_is_one_line(published):
    paths = published["paths"]
    with pytest.raises(CheckpointError) as error:
        load_published(published["dir"], [paths["AL_LLaMA_2_7B_Finetuned.pth"]], shape=TINY)
    message = str(error.value)
    assert "\n" not in message and "audio branch" in message and "--al-weights" in message
    with pytest.raises(CheckpointError) as error:
        load_published(published["dir"], [paths[n] for n in VL], [paths["VL_LLaMA_2_7B_Finetuned.pth"]], shape=TINY)
    assert "vision branch" in str(error.value) and "--vl-weights" in str(error.value)
    with pytest.raises(CheckpointError, match="eva_vit_g"):
        load_published(published["dir"], [paths[n] for n in VL[:2]], shape=TINY)


# ---- sound: modes and bad input -------------------------------------------------------------------

def test_silent_video_with_audio_on_is_one_line(published):
    model = published["model"]
    model.set_audio("on")
    try:
        with pytest.raises(MediaError) as error:
            model.prepare(ask(published["silent"]))
    finally:
        model.set_audio("auto")
    assert "\n" not in str(error.value) and "no sound" in str(error.value)
    _, reply = model.prepare(ask(published["silent"]))  # auto: the visual branch alone, and it says so
    assert reply.audio == ["no sound: visual branch only"]
    with pytest.raises(ConfigError):
        model.set_audio("loud")


def write_video_with_corrupt_audio(path, frames, seconds=2.0, rate=48000, fps=8) -> str:
    """mp4: a playable H.264 picture track and an AAC track whose packets are random bytes."""
    import av
    from fractions import Fraction

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("aac", rate=rate, layout="mono")
        for array in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
        container.mux(video.encode(None))
        source = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone(seconds, 440, rate, 0.3)), format="fltp", layout="mono")
        source.sample_rate, source.pts, source.time_base = rate, 0, Fraction(1, rate)
        resampler = av.AudioResampler(format=sound.codec_context.format.name, layout="mono", rate=rate, frame_size=1024)
        for chunk in resampler.resample(source) + resampler.resample(None):
            for packet in sound.encode(chunk):
                broken = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                broken.pts, broken.dts, broken.time_base, broken.stream = packet.pts, packet.dts, packet.time_base, sound
                container.mux(broken)
    return str(path)


def test_corrupt_sound_runs_the_visual_branch_with_a_warning(published, tmp_path, caplog):
    model = published["model"]
    path = write_video_with_corrupt_audio(tmp_path / "broken_sound.mp4", make_frames(16, 32, 32))
    assert media.has_audio(path)
    for mode in ("auto", "on"):
        model.set_audio(mode)
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING):
                _, reply = model.prepare(ask(path))
        finally:
            model.set_audio("auto")
        assert reply.audio[0].startswith("unreadable sound") and "no audio frame could be decoded" in reply.audio[0]
        assert "broken_sound.mp4" in caplog.text and "visual branch only" in caplog.text
        assert reply.visual_tokens[0]["language_model"] == TINY.video_queries  # visual tokens only


def test_an_audio_file_is_described_by_the_audio_branch(published, tmp_path):
    model = published["model"]
    path = write_audio(tmp_path / "tone.wav", tone(2.5, 440, 16000, 0.3), rate=16000)
    messages = [{"role": "user", "content": [{"type": "audio", "audio": path}, {"type": "text", "text": QUESTION}]}]
    embeds, reply = model.prepare(messages)
    assert reply.audio == ["used"] and reply.visual_tokens[0]["language_model"] == TINY.audio_queries
    caption = model.caption(path, max_new_tokens=3)
    assert caption.generated_tokens >= 1
    messages[0]["content"][0] = {"type": "audio", "audio": published["silent"]}
    with pytest.raises(MediaError, match="no audio stream"):
        model.prepare(messages)


def test_a_model_without_an_audio_branch_refuses_audio_parts(published):
    paths = published["paths"]
    model = load_published(published["dir"], [paths[n] for n in VL], shape=TINY)
    assert model.preset.media.audio is False
    _, reply = model.prepare(ask(published["video"]))
    assert reply.audio == ["off"]
    with pytest.raises(ConfigError, match="no audio branch"):
        model.prepare([{"role": "user", "content": [{"type": "audio", "audio": published["video"]}]}])
    with pytest.raises(ConfigError, match="--al-weights"):
        model.set_audio("on")


def test_a_llama_2_chat_decoder_gets_the_llama_2_template(published, tmp_path):
    from aurora.testing.video_llama import write_published

    out = tmp_path / "llama2"
    _, paths = write_published(out, seed=3)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    model = load_published(out, [paths[n] for n in VL], shape=TINY)
    assert model.template.name == "video_llama_2" and published["model"].template.name == "video_llama"


def test_llama_2_template_renders_the_published_way():
    from aurora.prompts import get_template

    chat = get_template("video_llama_2")
    turns = [("user", "<Video><image></Video> Hi"), ("assistant", "Hello."), ("user", "More?")]
    assert chat.render(turns) == (
        "[INST] <<SYS>>\nYou are a helpful language and vision assistant. You are able to understand the visual "
        "content that the user provides, and assist the user with a variety of tasks using natural language.\n"
        "<</SYS>>\n\n<Video><image></Video> Hi [/INST] Hello. </s><s>[INST] More? [/INST]")
    vicuna = get_template("video_llama")
    assert vicuna.render([("user", "A"), ("assistant", "B"), ("user", "C")]) == "###Human: A###Assistant: B###Human: C###Assistant:"
    assert json.dumps(vicuna.stop) == '["###"]'


# ---- the command line -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("video_llama_cli")
    _, paths = write_published(out, seed=2, config=True)  # video_llama.json states the tiny shape
    video = write_video_with_audio(out / "av.mp4", make_frames(16, 32, 32), tone(3.0, 440, 48000, 0.3), fps=8)
    silent = write_video(out / "silent.mp4", make_frames(16, 32, 32), fps=8)
    return out, paths, video, silent


def run_cli(capsys, *argv):
    from aurora.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_captions_with_sound_and_says_so(capsys, cli_checkpoint):
    out, paths, video, silent = cli_checkpoint
    flags = ["--model", out, "--vl-weights", *[paths[n] for n in VL], "--al-weights", *[paths[n] for n in AL],
             "--max-new-tokens", "3"]
    code, stdout, err = run_cli(capsys, "caption", video, "--json", *flags)
    assert code == 0, err
    assert json.loads(stdout)["audio"] == "used"
    code, stdout, err = run_cli(capsys, "caption", silent, "--json", *flags)
    assert code == 0, err
    assert json.loads(stdout)["audio"] == "no sound: visual branch only"
    code, stdout, err = run_cli(capsys, "caption", silent, "--audio", "on", *flags)
    assert code == 2 and err.count("\n") == 1 and "no sound" in err
    code, stdout, err = run_cli(capsys, "caption", video, "--json", "--audio", "off", *flags)
    assert code == 0 and json.loads(stdout)["audio"] == "off"


def test_cli_refuses_a_file_for_the_wrong_branch(capsys, cli_checkpoint):
    out, paths, video, _ = cli_checkpoint
    code, _, err = run_cli(capsys, "caption", video, "--model", out, "--vl-weights", paths["imagebind_huge.pth"])
    assert code == 2 and err.count("\n") == 1 and "--al-weights" in err



def test_cli_refuses_a_reduction_it_does_not_implement(capsys, cli_checkpoint):
    out, paths, video, _ = cli_checkpoint
    code, _, err = run_cli(capsys, "caption", video, "--model", out, "--vl-weights", *[paths[n] for n in VL],
                           "--reduction", "reuse", "--token-kept-ratio", "0.25")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "reduction 'reuse' is not implemented for video_llama models: use tome" in err

# ---- the server -------------------------------------------------------------------------------------

def test_the_server_hears_videos_and_input_audio(published, tmp_path):
    import base64

    httpx = pytest.importorskip("httpx")
    from aurora.serve import ServeSettings, create_app
    from tests.serve_helpers import running_app

    model = published["model"]
    wav = write_audio(tmp_path / "tone.wav", tone(2.0, 440, 16000, 0.3), rate=16000)
    encoded = base64.b64encode(open(wav, "rb").read()).decode()
    video = "data:video/mp4;base64," + base64.b64encode(open(published["video"], "rb").read()).decode()
    app = create_app(model, ServeSettings(model="video-llama"))
    with running_app(app) as url, httpx.Client(base_url=url, trust_env=False, timeout=120) as http:
        def post(part):
            body = {"model": "video-llama", "max_tokens": 2,
                    "messages": [{"role": "user", "content": [part, {"type": "text", "text": QUESTION}]}]}
            return http.post("/v1/chat/completions", json=body)

        heard = post({"type": "input_audio", "input_audio": {"data": encoded, "format": "wav"}})
        assert heard.status_code == 200, heard.text
        assert heard.json()["aurora"]["audio"] == ["used"]
        seen = post({"type": "video_url", "video_url": {"url": video}})
        assert seen.status_code == 200, seen.text
        assert seen.json()["aurora"]["audio"] == ["used"]
        bad = post({"type": "input_audio", "input_audio": {"data": encoded}})
        assert bad.status_code == 400 and "\n" not in bad.json()["error"]["message"]


def test_cli_chat_about_a_sound_file(capsys, monkeypatch, cli_checkpoint):
    import io

    out, paths, _, _ = cli_checkpoint
    wav = write_audio(out / "tone.wav", tone(2.0, 440, 16000, 0.3), rate=16000)
    monkeypatch.setattr("sys.stdin", io.StringIO("What do you hear?\n"))
    code, stdout, err = run_cli(capsys, "chat", wav, "--model", out, "--vl-weights", *[paths[n] for n in VL],
                                "--al-weights", *[paths[n] for n in AL], "--max-new-tokens", "2")
    assert code == 0, err
    code, _, err = run_cli(capsys, "chat", wav, "--model", out, "--vl-weights", *[paths[n] for n in VL])
    assert code == 2 and err.count("\n") == 1 and "no audio branch" in err


def test_serve_and_gui_take_the_branch_files_and_the_sound_setting(cli_checkpoint, monkeypatch):
    import argparse

    from aurora.serve import cli
    from aurora.serve.gui import ModelCache

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    out, paths, _, _ = cli_checkpoint  # its video_llama.json lists both branches
    vision_only = ["--model", str(out), "--vl-weights", *[str(paths[n]) for n in VL], "--device", "cpu"]
    served = {}
    monkeypatch.setattr("aurora.serve.app.create_app", lambda model, settings: served.setdefault("model", model))
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: None)
    args = parser.parse_args(["serve", *vision_only])
    assert args.run(args) == 0
    model = served["model"]
    assert model.preset.family == "video_llama" and model.audio is None  # the flags, not the json, chose the branches

    monkeypatch.setattr("aurora.serve.gui.launch_gui", lambda model, host, port, **kw: served.setdefault("gui", kw))
    args = parser.parse_args(["gui", *vision_only[2:], "--al-weights", *[str(paths[n]) for n in AL], "--audio", "off"])
    assert args.run(args) == 0  # the decoder comes from the path box
    gui_model = ModelCache(None, None, **served["gui"]).get(str(out))
    assert gui_model.audio is not None and gui_model.audio_mode == "off"
    with pytest.raises(ConfigError, match="--audio on: this auroracap model has no audio branch"):
        ModelCache(None, None, device="cpu", audio="on").get(str(DEFAULT_MODEL))
