"""Loading both AuroraCap layouts, parity with plain transformers compositions, generation."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, CLIPVisionModel, LlamaForCausalLM, LlavaForConditionalGeneration

import aurora
from aurora.errors import CheckpointError, ConfigError
from aurora.media import Frames
from aurora.models import auroracap
from aurora.prompts import user_content

def make_frames(count):
    """Already-decoded frames (4 of a 10-frame clip at 10 fps), as media.load_visual returns."""
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (count, 48, 80, 3), dtype=np.uint8)
    indices = [3 * i for i in range(count)]
    return Frames(array, indices, [i / 10 for i in indices], 10, 10.0, 1.0, "clip.mp4", False)


PROMPT = "USER: " + user_content([3], "Describe the video in detail.") + " ASSISTANT:"


def encode_ours(model, pixels, ratio=1.0):
    with torch.no_grad():
        embeds = model.embed_prompt(PROMPT, [model.encode(pixels, ratio)])
        return model.language_model(inputs_embeds=embeds).logits


def chunk_ids(tokenizer, prompt, image_ids=None):
    """AuroraCap's tokenisation: BOS + chunks between placeholders; image slots as given."""
    ids, slots = [], []
    for i, chunk in enumerate(prompt.split("<image>")):
        ids += tokenizer.encode(chunk, add_special_tokens=(i == 0))
        if i < prompt.count("<image>"):
            slots.append(len(ids))
            ids += image_ids or []
    return ids, slots


def test_xtuner_logits_equal_plain_transformers_composition(xtuner_ckpt):
    model = aurora.load(xtuner_ckpt)
    pixels = torch.randn(3, 3, 64, 64)
    vision = CLIPVisionModel.from_pretrained(xtuner_ckpt / "visual_encoder").eval()
    llm = LlamaForCausalLM.from_pretrained(xtuner_ckpt).eval()
    tokenizer = AutoTokenizer.from_pretrained(xtuner_ckpt)
    weights = load_file(xtuner_ckpt / "projector" / "model.safetensors")
    projector = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
    projector.load_state_dict({k.removeprefix("model."): v for k, v in weights.items()})
    with torch.no_grad():
        visual = projector(vision(pixels, output_hidden_states=True).hidden_states[-2][:, 1:])  # (3, 64, 64)
        chunks = PROMPT.split("<image>")
        pieces = []
        for i, chunk in enumerate(chunks):
            ids = tokenizer.encode(chunk, add_special_tokens=(i == 0))
            pieces.append(llm.get_input_embeddings()(torch.tensor(ids)))
            if i < 3:
                pieces.append(visual[i])
        expected = llm(inputs_embeds=torch.cat(pieces)[None]).logits
    torch.testing.assert_close(encode_ours(model, pixels), expected, atol=1e-5, rtol=0)


def test_hf_layout_logits_equal_transformers_llava(hf_ckpt):
    model = aurora.load(hf_ckpt)
    llava = LlavaForConditionalGeneration.from_pretrained(hf_ckpt).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_ckpt)
    pixels = torch.randn(3, 3, 64, 64)
    image_id = llava.config.image_token_id
    ids, _ = chunk_ids(tokenizer, PROMPT, [image_id] * 64)  # 8 x 8 patches per frame at ratio 1.0
    with torch.no_grad():
        expected = llava(input_ids=torch.tensor([ids]), pixel_values=pixels).logits
    ours = encode_ours(model, pixels)
    vocab = ours.shape[-1]
    torch.testing.assert_close(ours, expected[..., :vocab], atol=1e-5, rtol=0)


def test_in_memory_llava_shares_weights_and_gives_the_same_logits(xtuner_ckpt):
    model = aurora.load(xtuner_ckpt)
    llava = auroracap.as_hf_llava(model).eval()  # benchmarks run this as the equal-work baseline
    assert not [name for name, b in llava.named_buffers() if b.is_meta]
    pixels = torch.randn(3, 3, 64, 64)
    ids, _ = chunk_ids(model.tokenizer, PROMPT, [llava.config.image_token_id] * 64)
    with torch.no_grad():
        expected = llava(input_ids=torch.tensor([ids]), pixel_values=pixels).logits
    ours = encode_ours(model, pixels)
    torch.testing.assert_close(ours, expected[..., : ours.shape[-1]], atol=1e-5, rtol=0)


def test_convert_roundtrip_keeps_logits(xtuner_ckpt, tmp_path):
    xtuner = aurora.load(xtuner_ckpt)
    auroracap.save_hf_llava(aurora.load(xtuner_ckpt), tmp_path / "hf")
    auroracap.save_xtuner(aurora.load(tmp_path / "hf"), tmp_path / "back")
    pixels = torch.randn(3, 3, 64, 64)
    expected = encode_ours(xtuner, pixels, 0.5)
    for path in (tmp_path / "hf", tmp_path / "back"):
        logits = encode_ours(aurora.load(path), pixels, 0.5)
        torch.testing.assert_close(logits[..., : expected.shape[-1]], expected, atol=1e-5, rtol=0)


def test_legacy_vision_model_prefix_loads(xtuner_ckpt, tmp_path):
    """AuroraCap's published visual_encoder/ stores keys as vision_model.*; they must load."""
    copy = shutil.copytree(xtuner_ckpt, tmp_path / "legacy")
    weights = copy / "visual_encoder" / "model.safetensors"
    save_file({f"vision_model.{k}": v for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    pixels = torch.randn(3, 3, 64, 64)
    torch.testing.assert_close(encode_ours(aurora.load(copy), pixels), encode_ours(aurora.load(xtuner_ckpt), pixels))


def test_qwen2_siglip_chatml(checkpoints):
    model = aurora.load(checkpoints("xtuner", "qwen2"))
    assert model.preset.template.name == "chatml" and not model.tower.has_cls
    reply = model.caption(make_frames(2), max_new_tokens=5)
    # 64 patches, no CLS, 3 merging layers of r = int(64 * 0.2 / 3) = 4 at the preset's 0.8
    assert reply.visual_tokens_per_frame == [52]
    assert reply.generated_tokens <= 5


@pytest.fixture(scope="module")
def tiny(xtuner_ckpt):
    return aurora.load(xtuner_ckpt)


@pytest.fixture
def frames():
    return make_frames(4)


def test_greedy_is_deterministic_and_streaming_matches(tiny, frames):
    first = tiny.caption(frames, token_kept_ratio=0.5)
    second = tiny.caption(frames, token_kept_ratio=0.5)
    assert first.text == second.text and first.generated_tokens > 0
    stream = tiny.caption(frames, token_kept_ratio=0.5, stream=True)
    assert "".join(stream) == first.text == stream.reply.text


def test_sampling_with_seed_is_reproducible_and_beams_run(tiny, frames):
    a = tiny.caption(frames, temperature=1.0, top_p=0.9, seed=3)
    b = tiny.caption(frames, temperature=1.0, top_p=0.9, seed=3)
    assert a.text == b.text
    beams = tiny.caption(frames, num_beams=2, max_new_tokens=4)
    assert beams.generated_tokens <= 4


def test_reply_metadata(tiny, frames):
    reply = tiny.caption(frames, token_kept_ratio=0.5)
    assert reply.frame_indices == [[0, 3, 6, 9]]
    assert reply.frame_timestamps == [[0.0, 0.3, 0.6, 0.9]]
    assert reply.visual_tokens_per_frame == [tiny.tower.tokens_per_frame(64, 64, 0.5)]
    assert set(reply.timings) == {"decode", "preprocess", "encode", "prefill", "generate"}
    # 4 frames of visual tokens are in the prompt
    assert reply.prompt_tokens > 4 * reply.visual_tokens_per_frame[0]


def test_multi_turn_chat(tiny, frames):
    messages = [{"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "What moves?"}]}]
    first = tiny.chat(messages)
    messages += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
    second = tiny.chat(messages)
    assert second.prompt_tokens > first.prompt_tokens


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_bad_ratio(tiny, frames, bad):
    with pytest.raises(ConfigError, match="token_kept_ratio"):
        tiny.caption(frames, token_kept_ratio=bad)


def test_bad_generation_options(tiny, frames):
    with pytest.raises(ConfigError):
        tiny.caption(frames, top_p=0)
    with pytest.raises(ConfigError):
        tiny.chat([{"role": "robot", "content": "hi"}])


def test_missing_partial_and_unknown_checkpoints(xtuner_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        aurora.load(tmp_path / "nope")
    partial = shutil.copytree(xtuner_ckpt, tmp_path / "partial")
    weights = partial / "projector" / "model.safetensors"
    state = load_file(weights)
    state.pop("model.2.weight")
    save_file(state, weights)
    with pytest.raises(CheckpointError, match="partial"):
        aurora.load(partial)
    no_llm = shutil.copytree(xtuner_ckpt, tmp_path / "no_llm")
    (no_llm / "model.safetensors").unlink()
    with pytest.raises(CheckpointError):
        aurora.load(no_llm)
    no_projector = shutil.copytree(xtuner_ckpt, tmp_path / "no_projector")
    shutil.rmtree(no_projector / "projector")
    with pytest.raises(CheckpointError, match="projector"):
        aurora.load(no_projector)
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        aurora.load(unknown)


def test_hub_id_without_network_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="Hugging Face Hub"):
        aurora.load("someone/not-a-real-aurora-model")


def test_vicuna_style_sentencepiece_tokenizer(tmp_path):
    """Vicuna ships tokenizer.model only; it must load and give AuroraCap's BOS + chunk ids."""
    from aurora.testing.checkpoints import build_sentencepiece_tokenizer, build_tiny

    tokenizer = build_sentencepiece_tokenizer(tmp_path / "sp")
    auroracap.save_xtuner(build_tiny(tokenizer=tokenizer), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "tokenizer.json").unlink(missing_ok=True)  # the published file set:
    for name in ("tokenizer.model", "tokenizer_config.json"):  # tokenizer.model + its config
        shutil.copy(tmp_path / "sp" / name, tmp_path / "ckpt" / name)
    model = aurora.load(tmp_path / "ckpt")
    assert model.tokenizer.encode("USER: hi")[0] == 1  # BOS added on the first chunk
    reply = model.caption(make_frames(2), max_new_tokens=3)
    assert reply.generated_tokens >= 1


def test_stop_strings_end_the_reply_and_are_not_streamed(tiny, frames):
    full = tiny.caption(frames, max_new_tokens=12)
    assert len(full.text) > 2
    stop = full.text[2:4]  # a piece of the greedy answer
    pieces = []
    cut = tiny.caption(frames, max_new_tokens=12, stop=(stop,), on_text=pieces.append)
    assert cut.text == full.text[: full.text.find(stop)]
    assert "".join(pieces) == cut.text and cut.finish_reason == "stop"
    assert full.finish_reason in ("stop", "length")


def test_cancel_event_stops_generation(tiny, frames):
    import threading

    cancel = threading.Event()
    cancel.set()
    reply = tiny.caption(frames, max_new_tokens=12, cancel=cancel)
    assert reply.finish_reason == "cancelled" and reply.generated_tokens <= 1


def test_batched_captions_equal_one_by_one(tiny):
    clips = [make_frames(4), make_frames(2), make_frames(3)]
    clips[1].array[:] = 255 - clips[1].array  # different content, different lengths
    singles = [tiny.caption(c, max_new_tokens=8, token_kept_ratio=0.5).text for c in clips]
    batched = tiny.caption_batch(clips, max_new_tokens=8, token_kept_ratio=0.5)
    assert [r.text for r in batched] == singles
    assert [len(r.frame_indices[0]) for r in batched] == [4, 2, 3]
