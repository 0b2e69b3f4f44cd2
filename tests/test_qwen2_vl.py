"""Qwen2-VL run natively: Aurora's preprocessing equals transformers' PIL image processor, and a
caption equals transformers' own generate on the same tiny random model and hand-built inputs."""

import json

import pytest
import torch
from PIL import Image
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

import aurora
from aurora.models.qwen2_vl import VISUAL_TOKENS, patches
from aurora.testing.checkpoints import build_tokenizer
from aurora.testing.media import make_frames, write_video
from tests.native_helpers import lora_steps, serve_a_video


def write_tiny(root, config_class, model_class, vision: dict):
    """A tiny random checkpoint of one of transformers' Qwen-VL classes, with Qwen's vision tokens."""
    tokenizer = build_tokenizer("qwen2")
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISUAL_TOKENS)})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISUAL_TOKENS}
    torch.manual_seed(0)
    config = config_class(
        vision_config=vision,
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    model_class(config).eval().save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    root = write_tiny(tmp_path_factory.mktemp("qwen2vl"), Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                      dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2))
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(root)
    return root


def test_image_patches_equal_transformers_pil_processor():
    image = make_frames(1, 70, 90, seed=3)[0]
    processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    expected = processor(images=Image.fromarray(image), return_tensors="pt")
    ours, grid = patches(image[None], min_pixels=56 * 56, max_pixels=112 * 112)
    assert list(grid) == expected["image_grid_thw"][0].tolist()
    torch.testing.assert_close(ours, expected["pixel_values"].float(), atol=1e-5, rtol=0)


def test_a_video_caption_equals_transformers_generate(qwen, tmp_path):
    model = aurora.load(qwen)
    assert model.preset.family == "qwen2_vl"
    clip = write_video(tmp_path / "clip.mp4", make_frames(12, 56, 84), fps=8)
    reply = model.caption(clip, num_frames=4, max_new_tokens=6)
    frames = model.load_frames(clip, num_frames=4)
    pixels, (t, h, w) = patches(frames.array, min_pixels=128 * 28 * 28, max_pixels=28 * 28 * 768)
    count = t * h * w // 4
    prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
              + "<|video_pad|>" * count + "<|vision_end|>Describe the video in detail.<|im_end|>\n<|im_start|>assistant\n")
    ids = torch.tensor([model.tokenizer.encode(prompt, add_special_tokens=False)])
    reference = Qwen2VLForConditionalGeneration.from_pretrained(qwen).eval()
    types = (ids == reference.config.video_token_id).long() * 2  # the processor's mm_token_type_ids: video = 2
    grid = torch.tensor([[t, h, w]])
    with torch.no_grad():  # M-RoPE is on: without the types transformers gives other (1-D) positions
        full = reference(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=grid, mm_token_type_ids=types).logits
        flat_positions = torch.arange(ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        flat = reference(input_ids=ids, pixel_values_videos=pixels, video_grid_thw=grid,
                         position_ids=flat_positions).logits
        assert not torch.allclose(full, flat, atol=1e-4)
        inputs, _ = model.prepare(model._caption_messages(frames, None))
        ours = model.model(**model.collate([inputs])).logits
        torch.testing.assert_close(ours, full, atol=1e-5, rtol=0)
        reference.model.rope_deltas = None
        out = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=pixels,
                                 video_grid_thw=grid, mm_token_type_ids=types, max_new_tokens=6, do_sample=False,
                                 eos_token_id=model.tokenizer.eos_token_id,
                                 suppress_tokens=model.generator.suppressed_token_ids)[0, ids.shape[1]:]
    ended = [i for i, token in enumerate(out.tolist()) if token == model.tokenizer.eos_token_id]
    out = out[:ended[0]] if ended else out
    assert reply.prompt_tokens == ids.shape[1] and reply.visual_tokens_per_frame == [count]
    assert reply.text == model.tokenizer.decode(out, skip_special_tokens=True).lstrip()
    assert reply.generated_tokens == len(out)


@pytest.mark.parametrize("ratio", [0.5, 0.1])
def test_reduction_after_the_merger_keeps_m_rope_positions(qwen, tmp_path, ratio):
    model = aurora.load(qwen)
    clip = write_video(tmp_path / "clip.mp4", make_frames(12, 56, 84), fps=8)
    frames = model.load_frames(clip, num_frames=4)
    full_inputs, full = model.prepare(model._caption_messages(frames, None))
    inputs, reply = model.prepare(model._caption_messages(frames, None), token_kept_ratio=ratio)
    merged = full.visual_tokens_per_frame[0]
    kept = round(ratio * merged)
    assert reply.visual_tokens == [{"patches": 4 * merged, "encoder": merged, "language_model": kept}]
    assert reply.prompt_tokens == full.prompt_tokens - merged + kept
    reference = Qwen2VLForConditionalGeneration.from_pretrained(qwen).eval().model
    ids = full_inputs["input_ids"][None]
    positions, _ = reference.get_rope_index(ids, full_inputs["mm_token_type_ids"][None],
                                            video_grid_thw=full_inputs["video_grid_thw"])  # (3, 1, L) unreduced
    # every kept token has its unreduced position: match kept embeddings back to their places
    with torch.no_grad():
        features = reference.get_video_features(full_inputs["pixel_values_videos"], full_inputs["video_grid_thw"]).pooler_output[0]
        embeds = reference.get_input_embeddings()(ids[0])
    embeds[ids[0] == reference.config.video_token_id] = features
    where = inputs["kept"]  # places of the kept tokens in the unreduced prompt
    assert where.tolist() == sorted(set(where.tolist()))
    torch.testing.assert_close(inputs["inputs_embeds"], embeds[where], atol=1e-6, rtol=0)
    torch.testing.assert_close(inputs["position_ids"], positions[:, 0, where], atol=0, rtol=0)
    text = (ids[0] != reference.config.video_token_id).nonzero()[:, 0].tolist()
    assert set(text) <= set(where.tolist())  # all text stays
    first = (ids[0] == reference.config.video_token_id).nonzero()[:, 0][: merged // 2]  # the first time step
    assert set(first.tolist()) <= set(where.tolist()) or kept < merged // 2
    assert model.caption(clip, num_frames=4, token_kept_ratio=ratio, max_new_tokens=4).generated_tokens > 0


def test_an_image_and_a_streamed_answer(qwen, tmp_path):
    model = aurora.load(qwen)
    Image.fromarray(make_frames(1, 60, 60)[0]).save(tmp_path / "still.png")
    reply = model.caption(tmp_path / "still.png", max_new_tokens=5)
    assert reply.visual_tokens_per_frame == [4] and reply.generated_tokens > 0  # 56x56: a 2x2 merged grid
    streamed = model.caption(tmp_path / "still.png", max_new_tokens=5, stream=True)
    assert "".join(streamed) == reply.text


def test_qwen2_5_vl_spaces_time_by_the_sampled_frames_seconds(tmp_path):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    write_tiny(tmp_path / "q25", Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
               dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64, window_size=56,
                    fullatt_block_indexes=[1], tokens_per_second=4))
    model = aurora.load(tmp_path / "q25")
    clip = write_video(tmp_path / "clip.mp4", make_frames(16, 56, 56), fps=8)
    frames = model.load_frames(clip, num_frames=4)  # frames 0, 5, 10, 15 at 8 fps: 0.625 s apart
    inputs, _ = model.prepare(model._caption_messages(frames, None))
    assert inputs["second_per_grid_ts"].tolist() == [pytest.approx(2 * 0.625)]
    reference = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "q25").eval()
    batch = model.collate([inputs])
    with torch.no_grad():
        ours = model.model(**batch).logits
        assert not torch.allclose(ours, reference(**{**batch, "second_per_grid_ts": torch.tensor([1.0])}).logits, atol=1e-4)
        torch.testing.assert_close(ours, reference(**batch).logits, atol=1e-5, rtol=0)
    reduced, reply = model.prepare(model._caption_messages(frames, None), token_kept_ratio=0.5)
    positions, _ = reference.model.get_rope_index(inputs["input_ids"][None], inputs["mm_token_type_ids"][None],
                                                  video_grid_thw=inputs["video_grid_thw"],
                                                  second_per_grid_ts=inputs["second_per_grid_ts"])
    torch.testing.assert_close(reduced["position_ids"], positions[:, 0, reduced["kept"]], atol=0, rtol=0)
    assert model.caption(clip, num_frames=4, max_new_tokens=3).generated_tokens > 0

    # training spaces time the same way: the data set's samples carry the frames' seconds
    from aurora.prompts import get_template
    from aurora.train.data import VideoTextDataset

    record = {"video": str(clip), "conversations": [{"from": "human", "value": "<video>\nWhat?"},
                                                    {"from": "gpt", "value": "A clip."}]}
    data = VideoTextDataset([record], model.tokenizer, get_template("qwen2_vl"), num_frames=4, layout="video")
    sample = data.get(0)
    assert sample.timestamps == pytest.approx([0, 0.625, 1.25, 1.875])
    trained, _ = model.training_inputs([sample], 1.0)
    assert trained["second_per_grid_ts"].tolist() == [pytest.approx(2 * 0.625)]


def test_a_native_model_is_served(qwen, tmp_path):
    answer, too_long = serve_a_video(qwen, write_video(tmp_path / "clip.mp4", make_frames(8, 56, 56), fps=8))
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] > 0
    assert too_long == 400  # the context comes from the native model's text config


def test_lora_fine_tuning_through_aurora_train(qwen, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", make_frames(8, 56, 56), fps=8)
    before, after, changed, _ = lora_steps(qwen, clip, tmp_path / "run")  # transformers' layout, LoRA merged
    assert after.preset.family == "qwen2_vl" and after.processing == before.processing
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # only what LoRA touched
    assert not any(k.startswith("model.visual.") for k in changed)
    assert after.caption(clip, num_frames=2, max_new_tokens=3).generated_tokens > 0


def test_training_with_merging_across_time_is_refused_in_one_line(qwen, tmp_path):
    from aurora.errors import ConfigError
    from aurora.train import load_config, train

    config = load_config(data=str(tmp_path / "none.jsonl"), output_dir=str(tmp_path / "run"), model=str(qwen),
                         train_parts=[], lora_rank=4, temporal_share=0.5)
    (tmp_path / "none.jsonl").write_text(json.dumps({"video": "x.mp4", "conversations": []}) + "\n")
    with pytest.raises(ConfigError, match="trains with tome only; set temporal_share: 0"):
        train(config, progress=False)


def test_merging_across_time_keeps_each_merged_tokens_earliest_m_rope_position(qwen, tmp_path):
    from aurora.vision.temporal import merge_across_time

    model = aurora.load(qwen)
    model.preset.reducer.method = "temporal"
    frames = model.load_frames(write_video(tmp_path / "clip.mp4", make_frames(12, 56, 84), fps=8), num_frames=4)
    full_inputs, full = model.prepare(model._caption_messages(frames, None))
    inputs, reply = model.prepare(model._caption_messages(frames, None), token_kept_ratio=0.3)
    merged = full.visual_tokens_per_frame[0]
    reference = Qwen2VLForConditionalGeneration.from_pretrained(qwen).eval().model
    ids, grid = full_inputs["input_ids"][None], full_inputs["video_grid_thw"]
    positions, _ = reference.get_rope_index(ids, full_inputs["mm_token_type_ids"][None], video_grid_thw=grid)
    with torch.no_grad():
        features = reference.get_video_features(full_inputs["pixel_values_videos"], grid).pooler_output[0]
        embeds = reference.get_input_embeddings()(ids[0])
    expected = merge_across_time(features.view(grid[0, 0], -1, features.shape[-1]), round(0.3 * merged))
    slots = (ids[0] == reference.config.video_token_id).nonzero()[:, 0]
    text = (ids[0] != reference.config.video_token_id).nonzero()[:, 0]
    where = torch.cat([text, slots[expected.first]]).sort().values
    assert inputs["kept"].tolist() == where.tolist() and reply.visual_tokens[0]["language_model"] == round(0.3 * merged)
    embeds[slots[expected.first]] = expected.tokens
    torch.testing.assert_close(inputs["inputs_embeds"], embeds[where], atol=1e-6, rtol=0)
    torch.testing.assert_close(inputs["position_ids"], positions[:, 0, where], atol=0, rtol=0)


# ---- the reducer method "reuse": the tower skips merge units that repeat the previous time step ----

TEXT = dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4})


def tiny_tower(version: str, depth: int = 2):
    """A tiny random vision tower of Qwen2-VL ("2") or Qwen2.5-VL ("2.5": windows of 2 x 2 merge units,
    block 1 (if any) attending to the whole step)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    if version == "2":
        config = Qwen2VLConfig(vision_config=dict(depth=depth, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2),
                               text_config=TEXT)
        core = Qwen2VLForConditionalGeneration(config).eval().model
    else:
        config = Qwen2_5_VLConfig(vision_config=dict(depth=depth, hidden_size=32, intermediate_size=64, num_heads=4,
                                                     out_hidden_size=64, window_size=56, fullatt_block_indexes=[1]),
                                  text_config=TEXT)
        core = Qwen2_5_VLForConditionalGeneration(config).eval().model
    sharpen(core.visual)
    return core


def sharpen(visual, seed=0):
    """Attention sharper than the init's near-uniform one, so who attends to whom shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in visual.blocks:
            block.attn.qkv.weight.copy_(torch.randn(block.attn.qkv.weight.shape, generator=generator) * 0.3)
    return visual


def repeating_rows(grid, changed=((1, 3), (2, 7)), seed=0):
    """(t * h * w, 3 * 2 * 14 * 14) patch rows whose later time steps repeat step 0 except one merge
    unit each (step, unit), a change that stays."""
    torch.manual_seed(seed)
    t, h, w = grid
    steps = torch.randn(1, h * w // 4, 4, 3 * 2 * 14 * 14).repeat(t, 1, 1, 1)  # (t, units, 4 patches, P)
    for step, unit in changed:
        steps[step:, unit] = torch.randn(4, steps.shape[-1])
    return steps.flatten(0, 2)


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_reused_tower_with_every_unit_computed_equals_get_video_features(version):
    from aurora.vision.qwen_reuse import reused_features, unit_plan

    core = tiny_tower(version, depth=3)
    grid = (3, 10, 12)  # 5 x 6 merge units a step: Qwen2.5-VL's windows 3 x 3 of them, the last row cut short
    rows = torch.randn(grid[0] * grid[1] * grid[2], 3 * 2 * 14 * 14)  # nothing repeats
    units = unit_plan(rows, grid, 2, budget=1.0)
    assert units.share == 1.0
    with torch.no_grad():
        expected = core.get_video_features(rows, torch.tensor([grid])).pooler_output[0]
        ours = reused_features(core.visual, rows, grid, units)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_one_block_reuse_is_exact_where_pixels_repeat(version):
    """After one block (Qwen2.5-VL's windowed) a computed patch's state equals the whole grid's
    computation, and a repeated patch keeps its source step's."""
    from transformers.vision_utils import get_vision_window_index

    from aurora.vision.qwen_reuse import reused_hidden, unit_plan

    core = tiny_tower(version, depth=1)
    visual, grid = core.visual, (3, 8, 8)
    rows = repeating_rows(grid)
    units = unit_plan(rows, grid, 2, budget=1.0)
    assert units.counts == [16, 1, 1]  # the one changed unit of each later step
    with torch.no_grad():
        ours = reused_hidden(visual, rows, grid, units).view(3, 16, 4, -1)  # (t, units, patches, C)
        full = visual(rows, grid_thw=torch.tensor([grid])).last_hidden_state.view(48, 4, -1)
    if version == "2.5":  # transformers' states are in window order: back to the merger's
        window_index, _ = get_vision_window_index(torch.tensor([grid]), 2, visual.window_size, visual.patch_size)
        full = full[window_index.argsort()]
    full = full.view(3, 16, 4, -1)
    changed = units.computed
    torch.testing.assert_close(ours[changed], full[changed], atol=1e-5, rtol=0)
    static = ~changed
    assert not torch.allclose(ours[static], full[static], atol=1e-4)  # the approximation: their context changed
    torch.testing.assert_close(ours[static], ours[units.source[static], static.nonzero()[:, 1]])


@pytest.mark.parametrize("budget", [0.25, 0.1])
def test_the_tower_computes_step_zero_and_the_budgets_share_of_later_units(budget):
    from aurora.vision.qwen_reuse import reused_features, unit_plan

    core = tiny_tower("2")
    grid = (5, 8, 8)  # 16 merge units a step
    rows = torch.randn(5 * 64, 3 * 2 * 14 * 14)
    seen = []
    core.visual.blocks[0].attn.qkv.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    units = unit_plan(rows, grid, 2, budget)
    with torch.no_grad():
        features = reused_features(core.visual, rows, grid, units)
    assert units.counts[0] == 16 and sum(units.counts[1:]) == round(budget * 16 * 4)
    assert seen == [4 * (16 + round(budget * 16 * 4))]  # patches through the blocks: 4 per computed unit
    assert features.shape == (5 * 16, 64)


def test_reuse_through_caption_keeps_m_rope_positions(qwen, tmp_path, capsys):
    from aurora.cli import main
    from aurora.vision.qwen_reuse import reused_features, unit_plan

    model = aurora.load(qwen)
    model.preset.reducer.method = "reuse"
    sharpen(model.model.model.visual)
    clip = write_video(tmp_path / "clip.mp4", make_frames(32, 56, 84), fps=8)
    frames = model.load_frames(clip, num_frames=16)
    full_inputs, full = model.prepare(model._caption_messages(frames, None), token_kept_ratio=1.0)
    inputs, reply = model.prepare(model._caption_messages(frames, None), token_kept_ratio=0.25)
    (t, h, w), merged = full_inputs["video_grid_thw"][0].tolist(), full.visual_tokens_per_frame[0]
    assert t == 8 and "encoder_computed" not in full.visual_tokens[0]  # 1.0: transformers' own path
    pixels = full_inputs["pixel_values_videos"]
    units = unit_plan(pixels, (t, h, w), 2, 0.25)
    assert units.counts[0] == merged // t and sum(units.counts) < merged
    kept = round(0.25 * merged)
    assert reply.visual_tokens == [{"patches": t * h * w, "encoder": merged, "encoder_computed": sum(units.counts),
                                    "language_model": kept}]
    assert reply.prompt_tokens == full.prompt_tokens - merged + kept == len(inputs["kept"])
    reference = Qwen2VLForConditionalGeneration.from_pretrained(qwen).eval().model
    sharpen(reference.visual)
    ids = full_inputs["input_ids"][None]
    positions, _ = reference.get_rope_index(ids, full_inputs["mm_token_type_ids"][None],
                                            video_grid_thw=full_inputs["video_grid_thw"])  # (3, 1, L) unreduced
    with torch.no_grad():
        features = reused_features(reference.visual, pixels, (t, h, w), units)
        whole = reference.get_video_features(pixels, full_inputs["video_grid_thw"]).pooler_output[0]
        embeds = reference.get_input_embeddings()(ids[0])
    assert not torch.allclose(features, whole, atol=1e-4)  # the tower really ran under reuse
    slots = ids[0] == reference.config.video_token_id
    embeds[slots] = features
    where = inputs["kept"]  # places of the kept tokens in the unreduced prompt
    assert set((~slots).nonzero()[:, 0].tolist()) <= set(where.tolist())  # all text stays
    assert int(slots[where].sum()) == kept > merged // t  # more than step 0 (computed whole, as the whole tower)
    torch.testing.assert_close(inputs["inputs_embeds"], embeds[where], atol=1e-6, rtol=0)
    torch.testing.assert_close(inputs["position_ids"], positions[:, 0, where], atol=0, rtol=0)
    caption = model.caption(clip, num_frames=16, token_kept_ratio=0.25, max_new_tokens=4)
    assert isinstance(caption.text, str) and caption.generated_tokens > 0
    assert caption.visual_tokens == reply.visual_tokens
    code = main(["caption", str(clip), "--model", str(qwen), "--json", "--num-frames", "16", "--max-new-tokens", "3",
                 "--reduction", "reuse", "--token-kept-ratio", "0.25"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["visual_tokens"] == reply.visual_tokens[0]
