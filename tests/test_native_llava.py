"""LLaVA-OneVision and LLaVA-NeXT-Video run natively: frames preprocessed as transformers' PIL
processors do, and at token_kept_ratio 1.0 logits and greedy captions equal transformers' own
forward / generate on the same tiny random model and inputs (a video and an image per family);
below 1.0 the token counts follow the documented rule. Checkpoints: transformers' layout, saved
and served; bad checkpoints are one-line errors."""

import json
import re
from dataclasses import replace
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from transformers import (
    CLIPImageProcessorPil,
    LlavaNextImageProcessorPil,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaNextVideoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    SiglipImageProcessorPil,
)

import aurora
from aurora.cli import main
from aurora.models import detect, save
from aurora.testing.checkpoints import build_tokenizer
from aurora.testing.media import make_frames, write_video
from aurora.vision.merge import tokens_after_merging
from aurora.vision.processor import FrameProcessor
from tests.native_helpers import lora_steps, serve_a_video

PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8)
FAMILIES = {  # name: (config, model, image processor, processor (its token counting), LM, vision tower, feature layer)
    "llava_onevision": (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionImageProcessorPil,
                        LlavaOnevisionProcessor, "qwen2", "siglip_vision_model", -1),
    "llava_next_video": (LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration, LlavaNextImageProcessorPil,
                         LlavaNextVideoProcessor, "llama", "clip_vision_model", -2),
}
PROMPTS = {  # Aurora's fallback templates (these tiny tokenizers have no chat template)
    "llava_onevision": "<|im_start|>user {visual}\nDescribe the video in detail.<|im_end|>\n<|im_start|>assistant\n",
    "llava_next_video": "USER: {visual}\nDescribe the video in detail. ASSISTANT:",
}


def write_tiny(root, name):
    """A tiny random checkpoint of one family in transformers' layout, with its image processor."""
    config_class, model_class, processor_class, _, lm, tower, layer = FAMILIES[name]
    tokenizer = build_tokenizer(lm)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<image>", "<video>")}
    torch.manual_seed(0)
    text = dict(model_type=lm, vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, max_position_embeddings=4096)
    config = config_class(vision_config=dict(model_type=tower, **VISION), text_config=text, image_token_id=ids["<image>"],
                          video_token_id=ids["<video>"], image_grid_pinpoints=PINPOINTS, vision_feature_layer=layer,
                          vision_feature_select_strategy="full" if tower.startswith("siglip") else "default")
    model_class(config).eval().save_pretrained(root)
    tokenizer.save_pretrained(root)
    sizes = {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3} if lm == "qwen2" \
        else {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
    processor_class(image_grid_pinpoints=PINPOINTS, **sizes).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return {name: write_tiny(tmp_path_factory.mktemp(name), name) for name in FAMILIES}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("media") / "clip.mp4", make_frames(12, 56, 84), fps=8)


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "still.png"
    Image.fromarray(make_frames(1, 40, 70, seed=5)[0]).save(path)
    return path


@pytest.mark.parametrize("processor", [
    CLIPImageProcessorPil(size={"shortest_edge": 33}, crop_size={"height": 30, "width": 31}),
    SiglipImageProcessorPil(size={"height": 32, "width": 32})])
def test_frames_equal_transformers_pil_processors(processor):
    frames = make_frames(3, 50, 70, seed=1)
    ours = FrameProcessor.from_config(processor.to_dict(), FrameProcessor(size=1))(frames)
    for frame, mine in zip(frames, ours):  # per frame, as each processor takes one image
        expected = processor(images=Image.fromarray(frame), return_tensors="pt")["pixel_values"][0]
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=0)


def reference_generate(reference, model, ids, **visual):
    out = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             eos_token_id=model.tokenizer.eos_token_id, pad_token_id=model.tokenizer.pad_token_id,
                             suppress_tokens=model.generator.suppressed_token_ids, **visual)[0, ids.shape[1]:]
    ended = [i for i, token in enumerate(out.tolist()) if token == model.tokenizer.eos_token_id]
    return out[:ended[0]] if ended else out


@pytest.mark.parametrize("name", FAMILIES)
def test_a_video_equals_transformers_forward_and_generate(tiny, clip, name):
    model = aurora.load(tiny[name])
    assert model.preset.family == name and detect(tiny[name])[0].name == name  # PLLaVA / AuroraCap do not claim it
    reply = model.caption(clip, num_frames=4, max_new_tokens=6)
    frames = model.load_frames(clip, num_frames=4)
    pixels = model.video_processor(frames.array)[None]  # (1, T, 3, 32, 32)
    count = 4 * 2 * 2 + (name == "llava_onevision")  # 4x4 patches pooled 2x2 per frame (+ OneVision's newline)
    prompt = PROMPTS[name].format(visual="<video>" * count)
    ids = torch.tensor([model.tokenizer.encode(prompt)])
    reference = FAMILIES[name][1].from_pretrained(tiny[name]).eval()
    with torch.no_grad():
        full = reference(input_ids=ids, pixel_values_videos=pixels).logits
        inputs, _ = model.prepare(model._caption_messages(frames, None))
        torch.testing.assert_close(model.model(**model.collate([inputs])).logits, full, atol=1e-5, rtol=0)
        out = reference_generate(reference, model, ids, pixel_values_videos=pixels)
    assert reply.prompt_tokens == ids.shape[1] and reply.visual_tokens_per_frame == [count]
    assert reply.visual_tokens == [{"patches": 64, "encoder": 64, "language_model": count}]
    assert reply.text == model.tokenizer.decode(out, skip_special_tokens=True).lstrip()
    assert reply.generated_tokens == len(out) > 0


def processor_count(name, image_processor, sizes, tiles) -> int:
    """The image tokens transformers' processor writes for one image (its own counting code; the
    processor itself cannot be built without torchvision's video processor)."""
    processor_class = FAMILIES[name][3]
    cls = int(name == "llava_next_video")  # CLIP's CLS: counted, then dropped (strategy "default")
    state = SimpleNamespace(image_processor=image_processor, num_image_tokens=16, vision_aspect_ratio="anyres_max_9",
                            patch_size=8, num_additional_image_tokens=cls)
    state._get_unpadded_features = partial(processor_class._get_unpadded_features, state)
    height, width = sizes
    return processor_class._get_number_of_features(state, height, width, *tiles.shape[-2:]) - cls


@pytest.mark.parametrize("name", FAMILIES)
def test_an_image_equals_transformers_forward_and_generate(tiny, still, name):
    model = aurora.load(tiny[name])
    reply = model.caption(still, max_new_tokens=6)
    processed = FAMILIES[name][2].from_pretrained(tiny[name])(images=Image.open(still), return_tensors="pt")
    pixels, sizes = processed["pixel_values"], processed["image_sizes"]
    count = processor_count(name, model.image_processor, sizes[0].tolist(), pixels)
    ids = torch.tensor([model.tokenizer.encode(PROMPTS[name].format(visual="<image>" * count).replace("video", "image"))])
    reference = FAMILIES[name][1].from_pretrained(tiny[name]).eval()
    with torch.no_grad():
        full = reference(input_ids=ids, pixel_values=pixels, image_sizes=sizes).logits
        inputs, _ = model.prepare(model._caption_messages(still, "Describe the image in detail."))
        torch.testing.assert_close(model.model(**model.collate([inputs])).logits, full, atol=1e-5, rtol=0)
        out = reference_generate(reference, model, ids, pixel_values=pixels, image_sizes=sizes)
    image = model.caption(still, "Describe the image in detail.", max_new_tokens=6)
    assert image.visual_tokens_per_frame == [count] and image.prompt_tokens == ids.shape[1]
    assert image.text == model.tokenizer.decode(out, skip_special_tokens=True).lstrip()
    assert reply.visual_tokens[0]["patches"] == pixels.shape[1] * 16  # every anyres tile's patches


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_reduced_counts_follow_the_rule(tiny, clip, still, name, ratio):
    model = aurora.load(tiny[name])
    full = model.caption(clip, num_frames=4, max_new_tokens=3)
    reply = model.caption(clip, num_frames=4, max_new_tokens=3, token_kept_ratio=ratio)
    newline = int(name == "llava_onevision")
    pooled = 4 * 2 * 2
    tower = model.model.model.vision_tower.config
    per_layer = int(16 * (1 - ratio) / tower.num_hidden_layers)  # AuroraCap's rule, spread over every layer
    layers = tower.num_hidden_layers + 1 + FAMILIES[name][6]  # the layers up to the feature layer run
    has_cls = int(name == "llava_next_video")
    kept_per_frame = tokens_after_merging(16 + has_cls, [per_layer] * layers, has_cls) - has_cls
    assert reply.visual_tokens == [{"patches": 64, "encoder": 4 * kept_per_frame,
                                    "language_model": round(ratio * pooled) + newline}]
    assert kept_per_frame < 16
    assert reply.prompt_tokens == full.prompt_tokens - full.visual_tokens[0]["language_model"] + round(ratio * pooled) + newline
    assert reply.generated_tokens > 0 and reply.finish_reason in ("stop", "length")
    image_full = model.caption(still, max_new_tokens=3)
    image = model.caption(still, max_new_tokens=3, token_kept_ratio=ratio)
    n = image_full.visual_tokens[0]["language_model"]
    assert image.visual_tokens[0]["language_model"] == round(ratio * n) < n
    assert image.visual_tokens[0]["encoder"] < image_full.visual_tokens[0]["encoder"]


def test_the_checkpoint_chat_template_is_used(tiny, clip, tmp_path):
    import shutil

    root = shutil.copytree(tiny["llava_onevision"], tmp_path / "ov")
    template = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
                "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ '\\n' + part['text'] }}"
                "{% else %}{{ '<' + part['type'] + '>' }}{% endif %}{% endfor %}{{ '<|im_end|>\\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    (root / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    model = aurora.load(root)
    frames = model.load_frames(clip, num_frames=4)
    inputs, reply = model.prepare([{"role": "user", "content": [{"type": "video", "video": frames},
                                                                {"type": "text", "text": "What moves?"}]}])
    expected = model.tokenizer.encode("<|im_start|>user " + "<video>" * 17 + "\nWhat moves?<|im_end|>\n<|im_start|>assistant\n")
    assert reply.prompt_tokens == len(expected)
    embeds = model.model.get_input_embeddings()(torch.tensor(expected))
    text = torch.tensor(expected) != model.model.config.video_token_id
    torch.testing.assert_close(inputs["inputs_embeds"][text], embeds[text])
    messages = [{"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "What moves?"}]}]
    fallback, _ = model.prepare(messages, template="llava_onevision")  # what training renders: the same prompt
    torch.testing.assert_close(fallback["inputs_embeds"], inputs["inputs_embeds"], atol=0, rtol=0)
    other, _ = model.prepare(messages, template="chatml")
    assert other["inputs_embeds"].shape[0] != len(expected)  # a named template wins over the checkpoint's


@pytest.mark.parametrize("name", FAMILIES)
def test_saved_in_transformers_layout_and_reloaded(tiny, clip, name, tmp_path):
    model = aurora.load(tiny[name])
    save(model, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == name
    FAMILIES[name][1].from_pretrained(tmp_path / "out")  # transformers reads it
    again = aurora.load(tmp_path / "out")
    assert again.video_processor == model.video_processor
    assert again.image_processor.to_dict() == model.image_processor.to_dict()
    first = model.caption(clip, num_frames=4, max_new_tokens=5)
    second = again.caption(clip, num_frames=4, max_new_tokens=5)
    assert (second.text, second.prompt_tokens) == (first.text, first.prompt_tokens)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_reports_counts_and_refuses_bad_checkpoints(tiny, clip, capsys, tmp_path):
    code, out, err = cli(capsys, "caption", clip, "--model", tiny["llava_next_video"], "--json", "--num-frames", "4",
                         "--token-kept-ratio", "0.5", "--max-new-tokens", "3", "--profile")
    assert code == 0, err
    assert json.loads(out)["visual_tokens_per_frame"] == 8  # 16 pooled tokens, half kept
    assert "visual tokens: patches 64 -> encoder 48 -> language_model 8" in err  # ToMe: 4 x 12 of 4 x 16
    unsupported = tmp_path / "unsupported"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({"model_type": "idefics3"}))
    code, _, err = cli(capsys, "caption", clip, "--model", unsupported)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "'idefics3'" in err and "llava_onevision" in err and "llava_next_video" in err
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "llava_qwen", "architectures": ["LlavaQwenForCausalLM"],
                                                    "auto_map": {"AutoModelForCausalLM": "modeling.LlavaQwen"}}))
    code, _, err = cli(capsys, "caption", clip, "--model", remote)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "needs remote code" in err and "--trust-remote-code" in err
    code, _, err = cli(capsys, "caption", clip, "--model", remote, "--trust-remote-code")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no Aurora family reads" in err


def test_served_over_http(tiny, clip):
    answer, too_long = serve_a_video(tiny["llava_onevision"], clip)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] > 0
    assert too_long == 400


def test_lora_fine_tuning_through_aurora_train(tiny, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", make_frames(8, 56, 56), fps=8)
    _, after, changed, _ = lora_steps(tiny["llava_next_video"], clip, tmp_path / "run")  # transformers' layout, merged
    assert after.preset.family == "llava_next_video"
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # only what LoRA touched
    assert not any("vision_tower" in k for k in changed)
    assert after.caption(clip, num_frames=2, max_new_tokens=3).generated_tokens > 0


def test_onevision_takes_one_tile_per_image_when_a_prompt_has_several(tiny, still, tmp_path):
    root = tiny["llava_onevision"]
    model = aurora.load(root)
    other = tmp_path / "other.png"
    Image.fromarray(make_frames(1, 64, 40, seed=9)[0]).save(other)
    messages = [{"role": "user", "content": [{"type": "image", "image": str(still)}, {"type": "image", "image": str(other)},
                                             {"type": "text", "text": "Compare."}]}]
    inputs, reply = model.prepare(messages)
    assert reply.visual_tokens_per_frame == [17, 17]  # the processor's num_image_tokens + a newline each
    processed = LlavaOnevisionImageProcessorPil.from_pretrained(root)(images=[Image.open(still), Image.open(other)],
                                                                      return_tensors="pt")
    prompt = PROMPTS["llava_onevision"].format(visual="<image>" * 17 + "\n" + "<image>" * 17)
    ids = torch.tensor([model.tokenizer.encode(prompt.replace("Describe the video in detail.", "Compare."))])
    reference = LlavaOnevisionForConditionalGeneration.from_pretrained(root).eval()
    with torch.no_grad():
        full = reference(input_ids=ids, pixel_values=processed["pixel_values"], image_sizes=processed["image_sizes"],
                         batch_num_images=torch.tensor([2])).logits
        torch.testing.assert_close(model.model(**model.collate([inputs])).logits, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_reducing_path_without_merges_is_transformers_own(tiny, clip, still, name):
    """At a ratio that merges nothing (r * patches < layers) and keeps every pooled token, Aurora's
    ToMe tower + unmerge + the family's own pooling give transformers' features exactly."""
    model = aurora.load(tiny[name])
    for visual in (model.load_frames(clip, num_frames=4), model.load_frames(still)):
        pixels, sizes = model.pixels(visual)
        full, _ = model.encode(pixels, sizes, 1.0)
        reduced, counts = model.encode(pixels, sizes, 0.999)
        assert counts["encoder"] == counts["patches"] and reduced.shape == full.shape
        torch.testing.assert_close(reduced, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_video_merged_across_time_keeps_the_rules_count(tiny, clip, name):
    from aurora.vision.temporal import merge_across_time

    model = aurora.load(tiny[name])
    model.preset.reducer.method = "temporal"
    frames = model.load_frames(clip, num_frames=4)
    pixels, sizes = model.pixels(frames)
    with torch.no_grad():
        tokens, counts = model.encode(pixels, sizes, 0.3)
        grid, encoder = model.reduced_tower(pixels.to(model.device, model.model.dtype), 1.0)  # the tower runs whole
        pooled = model.spec.video_tokens(model.model.model, grid)
    expected = merge_across_time(pooled, round(0.3 * 16)).tokens
    newline = int(name == "llava_onevision")
    assert counts == {"patches": 64, "encoder": 64, "language_model": round(0.3 * 16) + newline}
    torch.testing.assert_close(tokens[:len(expected)], expected, atol=1e-5, rtol=0)
    assert model.caption(clip, num_frames=4, max_new_tokens=3, token_kept_ratio=0.3).generated_tokens > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_reuse_at_a_full_budget_is_transformers_video_features(tiny, name):
    """Noise frames A, B, B, C under "reuse" at a ratio whose budget computes every changed patch and
    keeps every pooled token: the repeated frame is not computed, yet the tokens are transformers'."""
    model = aurora.load(tiny[name])
    model.preset.reducer.method = "reuse"
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pixels[2] = pixels[1]
    with torch.no_grad():
        grid, computed = model.reused_tower(pixels, 1.0)
        tokens, counts = model.encode(pixels, None, 0.999)  # budget 0.999: round(0.999 * 48) = every changed patch
        theirs = model.model.model.get_video_features(pixels[None]).pooler_output[0]
        direct = model.spec.video_tokens(model.model.model, grid).flatten(0, 1)
    assert computed == 3 * 16 and counts == {"patches": 64, "encoder": 3 * 16, "language_model": theirs.shape[0]}
    torch.testing.assert_close(direct, theirs[:direct.shape[0]], atol=1e-5, rtol=0)  # OneVision's newline after
    torch.testing.assert_close(tokens, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_reused_caption_counts_what_the_encoder_computed(tiny, clip, still, name):
    model = aurora.load(tiny[name])
    model.preset.reducer.method = "reuse"  # as --reduction reuse sets it
    newline = int(name == "llava_onevision")
    frames = model.load_frames(clip, num_frames=4)
    reply = model.caption(frames, max_new_tokens=3, token_kept_ratio=0.25)
    counts = reply.visual_tokens[0]
    assert counts["language_model"] == round(0.25 * 4 * 4) + newline == reply.visual_tokens_per_frame[0]
    assert 16 < counts["encoder"] <= 16 + round(0.25 * 3 * 16) and counts["patches"] == 64
    assert reply.generated_tokens > 0 and reply.finish_reason in ("stop", "length")
    still_video = replace(frames, array=frames.array[:1].repeat(4, axis=0))  # one frame, four times
    repeated = model.caption(still_video, max_new_tokens=3, token_kept_ratio=0.25)
    assert repeated.visual_tokens == [{"patches": 64, "encoder": 16, "language_model": round(0.25 * 16) + newline}]
    image_tome = model.caption(still, max_new_tokens=3, token_kept_ratio=0.25)  # an image keeps ToMe
    model.preset.reducer.method = "tome"
    assert model.caption(still, max_new_tokens=3, token_kept_ratio=0.25).visual_tokens == image_tome.visual_tokens
    assert image_tome.visual_tokens[0]["encoder"] < image_tome.visual_tokens[0]["patches"]


def test_reuse_reaches_the_model_from_the_cli(tiny, clip, capsys):
    code, out, err = cli(capsys, "caption", clip, "--model", tiny["llava_onevision"], "--json", "--num-frames", "4",
                         "--reduction", "reuse", "--token-kept-ratio", "0.25", "--max-new-tokens", "3", "--profile")
    assert code == 0, err
    assert json.loads(out)["visual_tokens_per_frame"] == round(0.25 * 16) + 1
    encoder = int(re.search(r"patches 64 -> encoder (\d+) -> language_model 5", err).group(1))
    assert 16 < encoder <= 16 + 12  # frame 0 and at most the budget's 12 of the later frames' 48 patches
