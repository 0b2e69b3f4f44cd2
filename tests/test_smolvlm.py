"""SmolVLM2 run natively: Aurora's preprocessing equals transformers' PIL image processor, a caption
equals transformers' own forward and generate on the same tiny random model and inputs (an image
and a video), and token reduction keeps the documented counts."""

import pytest
import torch
from PIL import Image
from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

import aurora
from aurora.models.smolvlm import VISUAL_TOKENS, default_chat_template, image_pixels, video_pixels
from aurora.testing.checkpoints import build_tokenizer
from aurora.testing.media import make_frames, write_video

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
