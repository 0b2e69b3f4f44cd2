"""SmolVLM2 run natively: Aurora's preprocessing equals transformers' PIL image processor, a caption
equals transformers' own forward and generate on the same tiny random model and inputs (an image
and a video), and token reduction keeps the documented counts."""

import pytest
import torch
from PIL import Image
from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

import aurora
from aurora.errors import ConfigError
from aurora.models.smolvlm import VISUAL_TOKENS, default_chat_template, image_pixels, video_pixels
from aurora.testing.checkpoints import build_tokenizer
from aurora.testing.media import make_frames, write_video
from tests.native_helpers import lora_steps, serve_a_video

SIDE, LONGEST = 64, 256  # the tower's square and the images' longest side (4 squares, as SmolVLM's 4 x 512)


def write_tiny(root):
    """A tiny random SmolVLM checkpoint with SmolVLM's special tokens and chat template."""
    tokenizer = build_tokenizer("qwen2")
    rows = [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISUAL_TOKENS) + ["<end_of_utterance>"] + rows})
    tokenizer.chat_template = default_chat_template()
    torch.manual_seed(0)
    config = SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=SIDE, patch_size=8),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    SmolVLMForConditionalGeneration(config).eval().save_pretrained(root)
    tokenizer.save_pretrained(root)
    SmolVLMImageProcessorPil(size={"longest_edge": LONGEST}, max_image_size={"longest_edge": SIDE}).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("smolvlm"))


@pytest.mark.parametrize("height, width, longest, split", [(70, 90, LONGEST, 16), (90, 50, LONGEST, 12),
                                                            (40, 40, LONGEST, 16), (70, 90, SIDE, 0)])
def test_image_squares_equal_transformers_pil_processor(height, width, longest, split):
    image = make_frames(1, height, width, seed=3)[0]
    processor = SmolVLMImageProcessorPil(size={"longest_edge": longest}, max_image_size={"longest_edge": SIDE})
    expected = processor(images=[[Image.fromarray(image)]], return_tensors="pt", return_row_col_info=True)
    ours, rows, cols = image_pixels(image, longest, SIDE)
    assert (rows, cols) == (expected["rows"][0][0], expected["cols"][0][0]) and rows * cols == split
    torch.testing.assert_close(ours, expected["pixel_values"][0], atol=1e-6, rtol=0)


def test_video_frames_equal_the_processor_without_splitting():
    frames = make_frames(3, 56, 84, seed=5)
    processor = SmolVLMImageProcessorPil(size={"longest_edge": 96}, max_image_size={"longest_edge": SIDE},
                                         do_image_splitting=False)
    ours = video_pixels(frames, 96, SIDE)
    for frame, square in zip(frames, ours):  # each frame: one square, as the video processor makes it
        expected = processor(images=[[Image.fromarray(frame)]], return_tensors="pt")["pixel_values"][0, 0]
        torch.testing.assert_close(square, expected, atol=1e-6, rtol=0)


def expected_prompt(tokenizer, kind: str, visual: str, text: str) -> str:
    """The prompt SmolVLM's processor builds: the chat template, then the visual's marker expanded."""
    messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": text}]}]
    rendered = tokenizer.apply_chat_template(messages, chat_template=default_chat_template(), tokenize=False,
                                             add_generation_prompt=True)
    return rendered.replace(f"<{kind}>", visual)


def transformers_answer(root, prompt: str, pixels: torch.Tensor, tokenizer, suppressed, new: int = 6):
    """transformers' own logits and greedy continuation for ids + (1, B, 3, S, S) pixels."""
    reference = SmolVLMForConditionalGeneration.from_pretrained(root).eval()
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    with torch.no_grad():
        logits = reference(input_ids=ids, pixel_values=pixels).logits
        out = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                                 max_new_tokens=new, do_sample=False, suppress_tokens=suppressed,
                                 eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_utterance>")])
    out = out[0, ids.shape[1]:].tolist()
    ended = [i for i, t in enumerate(out) if t in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_utterance>"))]
    return ids, logits, out[:ended[0]] if ended else out


def test_an_image_caption_equals_transformers(smol, tmp_path):
    from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

    model = aurora.load(smol)
    assert model.preset.family == "smolvlm"
    image = make_frames(1, 70, 90, seed=4)[0]
    Image.fromarray(image).save(tmp_path / "still.png")
    reply = model.caption(tmp_path / "still.png", prompt="What is shown?", max_new_tokens=6)
    processor = SmolVLMImageProcessorPil.from_pretrained(smol)
    processed = processor(images=[[Image.fromarray(image)]], return_tensors="pt", return_row_col_info=True)
    rows, cols, n = processed["rows"][0][0], processed["cols"][0][0], 16  # (64 / 8)^2 / 2^2 tokens a square
    visual = get_image_prompt_string(rows, cols, n, "<fake_token_around_image>", "<image>", "<global-img>")
    prompt = expected_prompt(model.tokenizer, "image", visual, "What is shown?")
    ids, logits, out = transformers_answer(smol, prompt, processed["pixel_values"], model.tokenizer,
                                           model.generator.suppressed_token_ids)
    inputs, _ = model.prepare(model._caption_messages(tmp_path / "still.png", "What is shown?"))
    assert inputs["input_ids"].tolist() == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(model.model(**model.collate([inputs])).logits, logits, atol=1e-5, rtol=0)
    assert reply.text == model.tokenizer.decode(out, skip_special_tokens=True).lstrip()
    assert reply.generated_tokens == len(out) and reply.prompt_tokens == ids.shape[1]
    assert reply.visual_tokens == [{"patches": 17 * 64, "encoder": 17 * 64, "language_model": 17 * n}]


def test_a_video_caption_equals_transformers(smol, tmp_path):
    from transformers.models.smolvlm.processing_smolvlm import (DEFAULT_MEDIA_OUTTRO, DEFAULT_VIDEO_INTRO,
                                                                FRAME_TIMESTAMP_MESSAGE, _prompt_single_image)

    model = aurora.load(smol)
    clip = write_video(tmp_path / "clip.mp4", make_frames(24, 56, 84), fps=4)  # 6 s
    reply = model.caption(clip, num_frames=4, max_new_tokens=6)
    frames = model.load_frames(clip, num_frames=4)
    processor = SmolVLMImageProcessorPil(size={"longest_edge": LONGEST}, max_image_size={"longest_edge": SIDE},
                                         do_image_splitting=False)
    pixels = torch.cat([processor(images=[[Image.fromarray(f)]], return_tensors="pt")["pixel_values"][0] for f in frames.array])
    visual = DEFAULT_VIDEO_INTRO.format(frame_count="four", video_duration="0:00:06")
    for t in frames.timestamps:
        visual += FRAME_TIMESTAMP_MESSAGE.format(timestamp=f"{int(t // 60):02d}:{int(t % 60):02d}")
        visual += _prompt_single_image(16, "<fake_token_around_image>", "<image>", "<global-img>")
    prompt = expected_prompt(model.tokenizer, "video", visual + DEFAULT_MEDIA_OUTTRO, "Describe the video in detail.")
    assert prompt.count("Frame from 00:0") == 4 and prompt.startswith("<|im_start|>User: You are provided")
    ids, logits, out = transformers_answer(smol, prompt, pixels[None], model.tokenizer, model.generator.suppressed_token_ids)
    inputs, _ = model.prepare(model._caption_messages(frames, None))
    assert inputs["input_ids"].tolist() == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(model.model(**model.collate([inputs])).logits, logits, atol=1e-5, rtol=0)
    assert reply.text == model.tokenizer.decode(out, skip_special_tokens=True).lstrip()
    assert reply.generated_tokens == len(out) and reply.visual_tokens_per_frame == [16]


def test_the_reduced_path_at_ratio_one_is_transformers_features(smol):
    """ToMe tower + post-norm + unmerge + connector at 1.0 give transformers' own image features."""
    model = aurora.load(smol)
    squares = video_pixels(make_frames(3, 56, 84, seed=2), LONGEST, SIDE)
    with torch.no_grad():
        ours, kept, encoder = model.encode_reduced(squares, 1.0, is_image=False)
        theirs = model.model.model.get_image_features(squares[None]).pooler_output[0]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert kept.tolist() == list(range(3 * 16)) and encoder == 3 * 64



def test_reuse_at_a_full_budget_is_transformers_features(smol):
    """Noise squares A, B, B, C under "reuse" at a budget that computes every changed patch: the
    repeated square is not computed, yet the connector's outputs are transformers' own."""
    model = aurora.load(smol)
    model.preset.reducer.method = "reuse"
    squares = torch.randn(4, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    squares[2] = squares[1]
    with torch.no_grad():
        ours, kept, encoder = model.encode_reduced(squares, 0.999, is_image=False)  # budget: every changed patch
        theirs = model.model.model.get_image_features(squares[None]).pooler_output[0]
    assert encoder == 3 * 64 and kept.tolist() == list(range(round(0.999 * 4 * 16)))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_a_reused_caption_counts_what_the_encoder_computed(smol, tmp_path):
    from dataclasses import replace

    model = aurora.load(smol)
    model.preset.reducer.method = "reuse"  # as --reduction reuse sets it
    frames = model.load_frames(write_video(tmp_path / "clip.mp4", make_frames(12, 56, 84), fps=8), num_frames=4)
    reply = model.caption(frames, max_new_tokens=3, token_kept_ratio=0.25)
    counts = reply.visual_tokens[0]
    assert counts["language_model"] == round(0.25 * 4 * 16) and counts["patches"] == 4 * 64
    assert 64 < counts["encoder"] <= 64 + round(0.25 * 3 * 64)  # frame 0, then at most the budget's share
    assert reply.generated_tokens > 0 and reply.finish_reason in ("stop", "length")
    still_video = replace(frames, array=frames.array[:1].repeat(4, axis=0))  # one frame, four times
    repeated = model.caption(still_video, max_new_tokens=3, token_kept_ratio=0.25)
    assert repeated.visual_tokens == [{"patches": 4 * 64, "encoder": 64, "language_model": 16}]
    Image.fromarray(make_frames(1, 60, 60)[0]).save(tmp_path / "still.png")
    image = model.caption(tmp_path / "still.png", max_new_tokens=3, token_kept_ratio=0.25)  # an image keeps ToMe
    assert image.visual_tokens == [{"patches": 17 * 64, "encoder": 17 * model.tower.tokens_per_frame(SIDE, SIDE, 0.25),
                                    "language_model": round(0.25 * 17 * 16)}]
    model.preset.reducer.method = "temporal"  # SmolVLM does not merge across time
    with pytest.raises(ConfigError, match="'temporal' is not implemented for smolvlm models: use tome or reuse"):
        model.caption(frames, max_new_tokens=3, token_kept_ratio=0.25)

@pytest.mark.parametrize("ratio", [0.5, 0.1])
def test_reduction_keeps_round_r_n_tokens_in_their_places(smol, tmp_path, ratio):
    model = aurora.load(smol)
    clip = write_video(tmp_path / "clip.mp4", make_frames(12, 56, 84), fps=8)
    frames = model.load_frames(clip, num_frames=4)
    full_inputs, full = model.prepare(model._caption_messages(frames, None))
    inputs, reply = model.prepare(model._caption_messages(frames, None), token_kept_ratio=ratio)
    kept = max(1, round(ratio * 4 * 16))
    per_square = model.tower.tokens_per_frame(SIDE, SIDE, ratio)  # ToMe's count (AuroraCap's rule)
    assert per_square < 64
    assert reply.visual_tokens == [{"patches": 4 * 64, "encoder": 4 * per_square, "language_model": kept}]
    assert reply.prompt_tokens == full.prompt_tokens - 4 * 16 + kept == inputs["inputs_embeds"].shape[0]
    ids = full_inputs["input_ids"]
    image = model.model.config.image_token_id
    where = inputs["kept"]
    assert where.tolist() == sorted(set(where.tolist()))
    assert set((ids != image).nonzero()[:, 0].tolist()) <= set(where.tolist())  # all text stays
    first = (ids == image).nonzero()[:, 0][:16]  # the first frame's tokens rank first
    assert set(first.tolist()) <= set(where.tolist()) or kept < 16
    text = model.model.get_input_embeddings()(ids[where][ids[where] != image])
    torch.testing.assert_close(inputs["inputs_embeds"][ids[where] != image], text, atol=0, rtol=0)
    answer = model.caption(clip, num_frames=4, token_kept_ratio=ratio, max_new_tokens=4)
    assert answer.generated_tokens > 0 and answer.visual_tokens[0]["language_model"] == kept


def test_a_reduced_image_and_a_streamed_answer(smol, tmp_path):
    model = aurora.load(smol)
    Image.fromarray(make_frames(1, 60, 60)[0]).save(tmp_path / "still.png")
    reply = model.caption(tmp_path / "still.png", max_new_tokens=5, token_kept_ratio=0.25)
    assert reply.visual_tokens[0]["language_model"] == round(0.25 * 17 * 16) and reply.generated_tokens > 0
    streamed = model.caption(tmp_path / "still.png", max_new_tokens=5, token_kept_ratio=0.25, stream=True)
    assert "".join(streamed) == reply.text


def test_the_checkpoints_chat_template_renders_images(smol, tmp_path):
    model = aurora.load(smol)
    Image.fromarray(make_frames(1, 60, 60)[0]).save(tmp_path / "still.png")
    clip = write_video(tmp_path / "clip.mp4", make_frames(8, 56, 56), fps=8)
    model.tokenizer.chat_template = default_chat_template().replace("{{ 'Assistant:' }}", "{{ 'Bot:' }}")
    decode = model.tokenizer.decode
    image, _ = model.prepare(model._caption_messages(tmp_path / "still.png", "Hi"))
    video, _ = model.prepare(model._caption_messages(clip, "Hi"), num_frames=2)
    assert decode(image["input_ids"]).endswith("Hi<end_of_utterance>\nBot:")
    assert decode(video["input_ids"]).endswith("Hi<end_of_utterance>\nAssistant:")  # the processor's video template


def test_the_processors_chat_template_file_is_read(smol, tmp_path):
    import json
    import shutil

    copy = shutil.copytree(smol, tmp_path / "copy")
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    for name in ("chat_template.jinja",):
        (copy / name).unlink(missing_ok=True)
    template = default_chat_template().replace("{{ 'Assistant:' }}", "{{ 'Bot:' }}")
    (copy / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    model = aurora.load(copy)
    assert model.tokenizer.chat_template == template


def test_a_smolvlm_model_is_served(smol, tmp_path):
    answer, too_long = serve_a_video(smol, write_video(tmp_path / "clip.mp4", make_frames(8, 56, 56), fps=8))
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] > 0
    assert too_long == 400


def test_lora_fine_tuning_saves_transformers_layout(smol, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", make_frames(8, 56, 56), fps=8)
    before, after, changed, out = lora_steps(smol, clip, tmp_path / "run")  # transformers' layout, LoRA merged
    assert after.preset.family == "smolvlm" and after.processing == before.processing
    assert SmolVLMForConditionalGeneration.from_pretrained(out).config.model_type == "smolvlm"
    assert changed and all(k.startswith("model.text_model.") and ("q_proj" in k or "v_proj" in k) for k in changed)
    assert after.caption(clip, num_frames=2, max_new_tokens=3).generated_tokens > 0
