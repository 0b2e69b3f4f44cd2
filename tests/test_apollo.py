"""Apollo: the clip rule and timed prompt equal an independent computation of the published ones, a
checkpoint in the published folder layout loads strictly, and Aurora's composition gives the same
logits as an independent composition of the same weights (transformers' SigLIP and Qwen2, and
InternVideo2 / the Perceiver resampler written out here from their published math)."""

import datetime
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from num2words import num2words
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

import aurora
from aurora import media
from aurora.errors import AuroraWarning, CheckpointError
from aurora.testing.checkpoints import build_tokenizer
from aurora.testing.media import frame_index_of, make_frames, write_video

# ---- the clip rule -------------------------------------------------------------------------------


def published_clips(clip_duration, frames_per_clip, total, fps, max_length, tokens, ratio):
    """Apollo's rule, written from its description (ApolloMMLoader + calculate_sample_indices) in
    plain Python: (clips of frame indices, (start, end) seconds)."""
    duration = total / fps
    share = min(1, max_length * ratio / (duration * tokens / clip_duration))
    n = math.ceil(duration / clip_duration * share)
    spacing = fps / (frames_per_clip / clip_duration)
    assert spacing > 0.5  # the rates tested here
    step = max(1, int(spacing))
    span = frames_per_clip * step
    part = total // n
    clips = []
    for k in range(n):
        if part > span:
            first = (part - span) // 2
            clip = [min(max(i, 0), part - 1) + k * part for i in range(first, first + span, step)]
        else:
            shift = (total - span) // max(1, n - 1) if total > span else 0
            length = min(span, total)
            clip = list(range(0, length, step))
            clip += [length] * (frames_per_clip - len(clip))
            clip = [min(max(i, 0), length - 1) + k * shift for i in clip]
        clips.append(clip)
    return clips, [(c[0] / fps, c[-1] / fps) for c in clips]


def vfr_rate(seconds: float, seed: int = 0) -> tuple[int, float]:
    """A variable-frame-rate video's frame count and average rate (frames over length)."""
    gaps = np.random.default_rng(seed).uniform(1 / 60, 1 / 12, size=int(seconds * 40))
    times = np.cumsum(gaps)
    total = int(np.searchsorted(times, seconds))
    return total, total / float(times[total - 1] + gaps[total - 1])


@pytest.mark.parametrize("seconds", [3, 61, 3600])
@pytest.mark.parametrize("rate", [24, 30, "vfr"])
def test_clip_indices_and_times_follow_the_published_rule(seconds, rate):
    total, fps = vfr_rate(seconds) if rate == "vfr" else (int(seconds * rate), float(rate))
    settings = dict(clip_duration=2, frames_per_clip=4, tokens_per_clip=32, model_max_length=16384,
                    clip_sampling_ratio=0.65)
    clips, ranges = media.sample_clips(total, fps, **settings)
    expected, expected_ranges = published_clips(2, 4, total, fps, 16384, 32, 0.65)
    assert clips == expected
    assert ranges == pytest.approx(expected_ranges, abs=1e-9)
    assert all(len(clip) == 4 and 0 <= min(clip) and max(clip) < total for clip in clips)
    assert len(clips) * 32 <= 0.65 * 16384 + 32  # the ratio rule keeps a long video within the context


def test_an_hour_is_sampled_sparsely_and_each_clip_is_centred_in_its_partition():
    total, fps = 3600 * 30, 30.0
    clips, _ = media.sample_clips(total, fps, 2, 4, 32, 16384, 0.65)
    n = math.ceil(1800 * min(1, 16384 * 0.65 / (3600 * 32 / 2)))
    assert len(clips) == n < 1800
    part = total // n
    for k, clip in enumerate(clips):
        centre = (clip[0] + clip[-1] + 15) / 2  # the clip spans 60 frames from its first
        assert abs(centre - (k + 0.5) * part) <= 1


def test_load_clips_decodes_the_chosen_frames_and_their_time_ranges(tmp_path):
    path = write_video(tmp_path / "clip.mp4", make_frames(80, 64, 48), fps=8)
    frames = media.load_clips(path, clip_duration=2, frames_per_clip=4, tokens_per_clip=8, model_max_length=40,
                              clip_sampling_ratio=0.65)
    total, fps = 80, 8.0
    clips, ranges = published_clips(2, 4, total, fps, 40, 8, 0.65)
    assert len(clips) < 5  # the context (40 tokens at 8 per clip) limits the 10 s video
    assert frames.indices == [i for clip in clips for i in clip]
    assert [frame_index_of(f) for f in frames.array] == frames.indices
    assert frames.clips == pytest.approx(ranges)


def test_load_clips_on_a_variable_frame_rate_file(tmp_path):
    times = np.cumsum(np.random.default_rng(1).uniform(0.05, 0.2, size=60)) - 0.05
    path = write_video(tmp_path / "vfr.mkv", make_frames(60, 64, 48), timestamps=times.round(3).tolist())
    info = media.probe_video(path)
    frames = media.load_clips(path, 2, 4, 8, 1000, 0.65)
    clips, ranges = published_clips(2, 4, 60, info["fps"], 1000, 8, 0.65)
    assert frames.indices == [i for clip in clips for i in clip]
    assert frames.clips == pytest.approx(ranges)


def test_the_timed_prompt_is_apollos_text():
    from aurora.prompts import clips_text

    clips = [(0.0, 1.5), (0.15, 2.25), (3599.95, 3601.4)]
    for duration in (3.0, 61.0333, 3602.0):
        head = (f"You are provided the following series of {num2words(3)}, 2 second clips from a "
                f"{datetime.timedelta(seconds=duration)} [H:MM:SS] video.\n")
        lines = [f"{round(np.float64(s), 1)}-{round(np.float64(e), 1)} seconds: <image>" for s, e in clips]
        assert clips_text(clips, duration, 2) == head + ",\n".join(lines)
    assert "0.2-2.2 seconds" in clips_text(clips, 3.0, 2)  # numpy's rounding, as published


# ---- a tiny checkpoint in the published layout ---------------------------------------------------

SIGLIP = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=42,
              patch_size=14)
IV2 = dict(img_size=28, patch_size=14, num_frames=4, tubelet_size=1, d_model=32, depth=2, num_heads=4, mlp_ratio=2.0,
           qkv_bias=False, qk_normalization=True, init_values=0.1, sep_image_video_pos_embed=True)
CONNECTOR = dict(model_type="mm_connector", vision_hidden_size=[24, 32], text_hidden_size=32,
                 projector_type="mlp2x_gelu", resampler_type="perciver", num_output_tokens=3, resampler_depth=2,
                 resampler_n_heads=4, resampler_head_dim=8, num_key_value_heads=2, ff_multi=2, hidden_act="silu")
TOWERS = ["siglip-so400m-patch14-384", "internvideo2"]


def iv2_weights(gen) -> dict:
    """InternVideo2's published key names, shapes from IV2 (CLIP heads included: they are unused)."""
    d, n, hidden = IV2["d_model"], 1 + 4 * 4, int(IV2["d_model"] * IV2["mlp_ratio"])
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, n, d), "img_pos_embed": (1, 5, d),
              "patch_embed.proj.weight": (d, 3, 1, 14, 14), "patch_embed.proj.bias": (d,),
              "clip_projector.norm1_q.weight": (d,)}
    for b in range(IV2["depth"]):
        shapes |= {f"blocks.{b}.norm1.weight": (d,), f"blocks.{b}.attn.qkv.weight": (3 * d, d),
                   f"blocks.{b}.attn.q_norm.weight": (d,), f"blocks.{b}.attn.k_norm.weight": (d,),
                   f"blocks.{b}.attn.proj.weight": (d, d), f"blocks.{b}.attn.proj.bias": (d,),
                   f"blocks.{b}.ls1.gamma": (d,), f"blocks.{b}.norm2.weight": (d,),
                   f"blocks.{b}.mlp.fc1.weight": (hidden, d), f"blocks.{b}.mlp.fc1.bias": (hidden,),
                   f"blocks.{b}.mlp.fc2.weight": (d, hidden), f"blocks.{b}.mlp.fc2.bias": (d,),
                   f"blocks.{b}.ls2.gamma": (d,)}
    state = {k: torch.randn(s, generator=gen) * 0.2 for k, s in shapes.items()}
    for k in state:
        if "norm" in k:
            state[k] = 1 + state[k] * 0.5
    return state


def connector_weights(gen) -> dict:
    d, v, heads, kv, hd, ff = 32, 56, 4, 2, 8, 64
    shapes = {"proj.0.weight": (d, v), "proj.0.bias": (d,), "proj.2.weight": (d, d), "proj.2.bias": (d,),
              "resampler.latents": (3, d), "resampler.norm.norm.weight": (d,), "resampler.norm.norm.bias": (d,),
              "resampler.norm.wheight": (d,)}
    for b in range(2):
        p = f"resampler.layers.{b}."
        for norm in ("input_latents_norm", "input_context_norm", "post_attention_layernorm"):
            shapes |= {p + norm + ".norm.weight": (d,), p + norm + ".norm.bias": (d,), p + norm + ".wheight": (d,)}
        shapes |= {p + "self_attn.q_proj.weight": (heads * hd, d), p + "self_attn.k_proj.weight": (kv * hd, d),
                   p + "self_attn.v_proj.weight": (kv * hd, d), p + "self_attn.o_proj.weight": (d, heads * hd),
                   p + "mlp.gate_proj.weight": (ff, d), p + "mlp.up_proj.weight": (ff, d),
                   p + "mlp.down_proj.weight": (d, ff)}
    return {k: torch.randn(s, generator=gen) * 0.3 for k, s in shapes.items()}


def write_apollo(root, clip_duration=2, max_length=4096):
    """Apollo's folders and key names, written by hand (not by Aurora's save)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    tokenizer = build_tokenizer("qwen2")
    lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=max_length, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)).eval()
    lm.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    SiglipVisionModel(SiglipVisionConfig(**SIGLIP)).save_pretrained(root / "vision_tower" / TOWERS[0])
    (root / "vision_tower" / TOWERS[0] / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 42, "width": 42}}))
    iv2 = root / "vision_tower" / TOWERS[1]
    iv2.mkdir(parents=True)
    save_file(iv2_weights(gen), iv2 / "model.safetensors")
    (iv2 / "config.json").write_text(json.dumps({"model_type": "internvideo2", **IV2}))
    (root / "vision_tower" / "config.json").write_text(json.dumps({"vision_towers": TOWERS}))
    (root / "mm_connector").mkdir()
    save_file(connector_weights(gen), root / "mm_connector" / "model.safetensors")
    (root / "mm_connector" / "config.json").write_text(json.dumps(CONNECTOR))
    config = {"model_type": "apollo", "architectures": ["ApolloForCausalLM"],
              "llm_cfg": {"architectures": ["Qwen2ForCausalLM"], "model_max_length": max_length},
              "vision_tower_cfg": {"vision_towers": TOWERS}, "mm_connector_cfg": CONNECTOR,
              "clip_duration": clip_duration, "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
              "use_mm_start_end": False, "model_max_length": max_length}
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def apollo_dir(tmp_path_factory):
    return write_apollo(tmp_path_factory.mktemp("apollo"))


@pytest.fixture(scope="module")
def apollo(apollo_dir):
    return aurora.load(apollo_dir)


def test_the_published_layout_loads_strictly(apollo_dir, apollo, tmp_path):
    import shutil

    assert apollo.preset.family == "apollo" and apollo.tokens_per_clip == 3 and apollo.clip_duration == 2
    iv2 = apollo.vision.towers[TOWERS[1]].model.state_dict()
    published = iv2_weights(torch.Generator().manual_seed(0))
    assert set(iv2) == set(published) - {"clip_projector.norm1_q.weight"}
    torch.testing.assert_close(iv2["blocks.1.ls2.gamma"], published["blocks.1.ls2.gamma"])
    for part, key, change in (("mm_connector", "resampler.norm.wheight", "drop"), ("vision_tower/internvideo2",
                              "blocks.0.attn.q_norm.weight", "drop"), ("mm_connector", "resampler.extra", "add")):
        broken = shutil.copytree(apollo_dir, tmp_path / f"{part.replace('/', '_')}_{change}")
        from safetensors.torch import load_file

        state = load_file(broken / part / "model.safetensors")
        if change == "drop":
            state.pop(key)
        else:
            state[key] = torch.zeros(1)
        save_file(state, broken / part / "model.safetensors")
        with pytest.raises(CheckpointError, match="missing" if change == "drop" else "unexpected"):
            aurora.load(broken)


def test_internvideo2_weights_nested_under_a_prefix_load_too(tmp_path):
    from aurora.vision.internvideo2 import InternVideo2, InternVideo2Config

    published = iv2_weights(torch.Generator().manual_seed(3))
    model = InternVideo2(InternVideo2Config.from_dict(IV2))
    model.load_published({f"vision_encoder.{k}": v for k, v in published.items()}, tmp_path)
    torch.testing.assert_close(model.state_dict()["pos_embed"], published["pos_embed"])
    with pytest.raises(CheckpointError, match="missing"):
        model.load_published({k: v for k, v in published.items() if k != "cls_token"}, tmp_path)


@pytest.mark.parametrize("edit, words", [
    (lambda c, r: c.update(use_mm_start_end=True), "use_mm_start_end"),
    (lambda c, r: c["vision_tower_cfg"].update(vision_towers=["clip-vit"]), "not 'clip-vit'"),
    (lambda c, r: (r / "mm_connector" / "config.json").write_text(json.dumps({**CONNECTOR, "resampler_type": "att_pool"})),
     "resampler_type 'att_pool'"),
])
def test_what_aurora_does_not_implement_is_one_line(apollo_dir, tmp_path, edit, words):
    import shutil

    root = shutil.copytree(apollo_dir, tmp_path / "ckpt")
    config = json.loads((root / "config.json").read_text())
    edit(config, root)
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=words) as error:
        aurora.load(root)
    assert "\n" not in str(error.value)


# ---- an independent composition -------------------------------------------------------------------


def rms(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def attend(q, k, v):  # (B, h, n, d) softmax attention written out
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v


def iv2_reference(s: dict, clips: torch.Tensor, blocks: int) -> torch.Tensor:
    """(B, T, 3, S, S) -> (B, T, h, w, D): InternVideo2 from its published math, CLS dropped."""
    x = F.conv3d(clips.transpose(1, 2), s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=(1, 14, 14))
    b, d, t, h, w = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(b, t * h * w, d)
    x = torch.cat([s["cls_token"].expand(b, 1, d), x], 1) + s["pos_embed"]
    for i in range(blocks):
        p = f"blocks.{i}."
        y = rms(x, s[p + "norm1.weight"])
        q, k, v = (y @ s[p + "attn.qkv.weight"].T).chunk(3, dim=-1)
        q, k = rms(q, s[p + "attn.q_norm.weight"]), rms(k, s[p + "attn.k_norm.weight"])
        heads = [z.view(b, -1, 4, d // 4).transpose(1, 2) for z in (q, k, v)]
        y = attend(*heads).transpose(1, 2).reshape(b, -1, d) @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"]
        x = x + y * s[p + "ls1.gamma"]
        y = F.gelu(rms(x, s[p + "norm2.weight"]) @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"])
        x = x + (y @ s[p + "mlp.fc2.weight"].T + s[p + "mlp.fc2.bias"]) * s[p + "ls2.gamma"]
    return x[:, 1:].reshape(b, t, h, w, d)


def connector_reference(s: dict, x: torch.Tensor) -> torch.Tensor:
    def norm(p, z):
        return F.layer_norm(z, z.shape[-1:], s[p + ".norm.weight"], s[p + ".norm.bias"]) * s[p + ".wheight"]

    x = F.gelu(x @ s["proj.0.weight"].T + s["proj.0.bias"]) @ s["proj.2.weight"].T + s["proj.2.bias"]
    lat = s["resampler.latents"].expand(x.shape[0], -1, -1)
    for i in range(2):
        p = f"resampler.layers.{i}."
        q_in, ctx = norm(p + "input_latents_norm", lat), norm(p + "input_context_norm", x)
        keys = torch.cat([ctx, q_in], 1)
        q = (q_in @ s[p + "self_attn.q_proj.weight"].T).view(x.shape[0], -1, 4, 8).transpose(1, 2)
        k = (keys @ s[p + "self_attn.k_proj.weight"].T).view(x.shape[0], -1, 2, 8).transpose(1, 2).repeat_interleave(2, 1)
        v = (keys @ s[p + "self_attn.v_proj.weight"].T).view(x.shape[0], -1, 2, 8).transpose(1, 2).repeat_interleave(2, 1)
        lat = lat + attend(q, k, v).transpose(1, 2).reshape(x.shape[0], -1, 32) @ s[p + "self_attn.o_proj.weight"].T
        y = norm(p + "post_attention_layernorm", lat)
        lat = lat + (F.silu(y @ s[p + "mlp.gate_proj.weight"].T) * (y @ s[p + "mlp.up_proj.weight"].T)) @ s[p + "mlp.down_proj.weight"].T
    return norm("resampler.norm", lat)


def test_logits_equal_an_independent_composition(apollo_dir, apollo):
    from safetensors.torch import load_file

    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(8, 30, 40, 3), dtype=np.uint8)
    clips = [(0.0, 1.5), (2.0, 3.5)]
    frames = media.Frames(array, list(range(8)), [i / 2 for i in range(8)], 16, 4.0, 4.0, "v.mp4", False, clips=clips)
    question = "What happens?"
    embeds, reply = apollo.prepare([{"role": "user", "content": [{"type": "video", "video": frames},
                                                                  {"type": "text", "text": question}]}])
    ours = apollo.language_model(inputs_embeds=embeds).logits

    siglip_px, iv2_px = (p.view(2, 4, *p.shape[1:]) for p in apollo.vision.preprocess(array))
    siglip = SiglipVisionModel.from_pretrained(apollo_dir / "vision_tower" / TOWERS[0]).eval()
    with torch.no_grad():
        a = siglip(siglip_px.flatten(0, 1), output_hidden_states=True).hidden_states[-2].reshape(2, 4, 3, 3, 24)
        b = iv2_reference(load_file(apollo_dir / "vision_tower" / TOWERS[1] / "model.safetensors"), iv2_px, blocks=1)
        b = F.interpolate(b.permute(0, 4, 1, 2, 3), size=(4, 3, 3), mode="trilinear").permute(0, 2, 3, 4, 1)
        features = connector_reference(load_file(apollo_dir / "mm_connector" / "model.safetensors"),
                                       torch.cat([a, b], -1).flatten(1, 3)).reshape(-1, 32)  # (clips x 3, D)

        # the published prompt and tokenisation: text pieces tokenised apart, one feature per video token
        head = "You are provided the following series of two, 2 second clips from a 0:00:04 [H:MM:SS] video.\n"
        video = head + ",\n".join(f"{s}-{e} seconds: " + "<|video_token|>" * 3 for s, e in clips)
        prompt = ("<|im_start|>system\n\nYou are a helpful vision-language assistant.<|im_end|>\n<|im_start|>user\n"
                  + video + "\n\n" + question + "<|im_end|>\n<|im_start|>assistant\n")
        tokenizer = apollo.tokenizer
        lm = Qwen2ForCausalLM.from_pretrained(apollo_dir / "llm").eval()
        rows, used = [], 0
        for i, piece in enumerate(prompt.split("<|video_token|>")):
            if i:
                rows.append(features[used:used + 1])
                used += 1
            if piece:
                rows.append(lm.get_input_embeddings()(torch.tensor(tokenizer(piece).input_ids)))
        expected = lm(inputs_embeds=torch.cat(rows)[None]).logits
    assert used == 6 and reply.clips == [[[0.0, 1.5], [2.0, 3.5]]]
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_tome_on_the_siglip_tower_keeps_one_block_per_clip(apollo):
    array = np.random.default_rng(1).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    frames = media.Frames(array, [0, 1, 2, 3], [0, 0.5, 1, 1.5], 4, 2.0, 2.0, "v.mp4", False, clips=[(0.0, 1.5)])
    (full, before), (merged, after) = apollo.encode_counted(frames, 1.0), apollo.encode_counted(frames, 0.5)
    assert full.shape == merged.shape == (1, 3, 32)
    assert not torch.allclose(full, merged)
    assert before == {"patches": 4 * 9 + 4 * 4, "encoder": 4 * 9 + 4 * 4, "language_model": 3}
    assert after["patches"] == before["patches"] and after["encoder"] < before["encoder"]


def test_clips_merged_across_time_keep_the_share(apollo):
    from aurora.vision.temporal import merge_across_time

    array = np.random.default_rng(1).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    array[4:] = array[:4]  # the second clip repeats the first
    frames = media.Frames(array, list(range(8)), [i / 2 for i in range(8)], 8, 4.0, 2.0, "v.mp4", False,
                          clips=[(0.0, 1.5), (2.0, 3.5)])
    full, _ = apollo.encode_counted(frames, 1.0)  # (2 clips, 3 tokens, D)
    apollo.preset.reducer.method = "temporal"
    try:
        blocks, counts = apollo.encode_counted(frames, 0.5)
    finally:
        apollo.preset.reducer.method = "tome"
    assert counts["language_model"] == 3 and counts["encoder"] == 2 * (4 * 9 + 4 * 4)  # the towers ran whole
    assert [len(b) for b in blocks] == [3, 0]  # the repeated clip is paid for once
    torch.testing.assert_close(torch.cat(blocks), merge_across_time(full, 3).tokens, atol=1e-5, rtol=0)


def test_a_video_caption_reports_its_clips_and_save_writes_the_published_layout(apollo, tmp_path):
    from aurora.models import save

    clip = write_video(tmp_path / "clip.mp4", make_frames(40, 48, 64), fps=8)
    reply = apollo.caption(clip, max_new_tokens=3)
    frames = apollo.load_frames(clip)
    assert reply.clips[0] == [[pytest.approx(s), pytest.approx(e)] for s, e in frames.clips] and len(frames.clips) == 3
    save(apollo, tmp_path / "saved")
    for part in ("llm/config.json", "vision_tower/internvideo2/model.safetensors", "mm_connector/config.json"):
        assert (tmp_path / "saved" / part).is_file()
    again = aurora.load(tmp_path / "saved")
    messages = [{"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "Why?"}]}]
    (before, _), (after, _) = apollo.prepare(messages), again.prepare(messages)
    torch.testing.assert_close(apollo.language_model(inputs_embeds=before).logits,
                               again.language_model(inputs_embeds=after).logits)


def test_frame_options_the_clip_rule_overrides_are_warned_about(apollo, tmp_path):
    import warnings

    clip = write_video(tmp_path / "clip.mp4", make_frames(24, 48, 64), fps=8)
    with pytest.warns(AuroraWarning, match="--num-frames / --fps are not used"):
        apollo.caption(clip, num_frames=3, max_new_tokens=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apollo.caption(clip, max_new_tokens=1)  # the defaults say nothing


def test_cli_json_lists_the_clips(apollo_dir, tmp_path, capsys):
    from aurora.cli import main

    clip = write_video(tmp_path / "clip.mp4", make_frames(40, 48, 64), fps=8)
    assert main(["caption", clip, "--model", str(apollo_dir), "--json", "--max-new-tokens", "2"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [len(c) for c in record["clips"]] == [2, 2, 2] and record["clips"][0][0] < record["clips"][-1][0]


def test_the_gui_shows_the_clips_on_a_timeline():
    from aurora.models.reply import Reply
    from aurora.serve.gui import stats_markdown
    from aurora.serve.timeline import BAR, clip_timeline

    array = np.zeros((8, 20, 30, 3), dtype=np.uint8)
    frames = media.Frames(array, list(range(8)), [0.0] * 8, 100, 10.0, 10.0, "v.mp4", False, clips=[(1.0, 2.5), (6.0, 7.5)])
    picture = clip_timeline(frames, width=1001)
    bar = picture[4 + BAR // 2]  # a row through the bar: the clips are coloured, the rest is grey
    coloured = np.flatnonzero((bar != 225).any(axis=1))
    assert coloured.tolist() == list(range(100, 251)) + list(range(600, 751))
    assert (picture[8 + BAR:, 101:100 + 108] == 0).all()  # the first clip's (black) frame under its start
    reply = Reply(text="", model="m", frame_indices=[list(range(8))], visual_tokens_per_frame=[3],
                  clips=[[[1.0, 2.5], [6.0, 7.5]]])
    assert "2 clips x 3 visual tokens = **6 visual tokens** (seconds 1.0-2.5, 6.0-7.5)" in stats_markdown(reply)


def test_siglip_preprocessing_is_apollos_pad_then_the_siglip_processor(apollo):
    from PIL import Image
    from transformers import SiglipImageProcessorPil

    frames = np.random.default_rng(2).integers(0, 256, size=(2, 30, 50, 3), dtype=np.uint8)
    ours = apollo.vision.towers[TOWERS[0]].preprocess(frames)
    padded = np.full((2, 50, 50, 3), 127, dtype=np.uint8)  # int(0.5 x 255), the frame centred
    padded[:, 10:40] = frames
    processor = SiglipImageProcessorPil(size={"height": 42, "width": 42})
    expected = processor(images=[Image.fromarray(f) for f in padded], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, expected.float(), atol=1e-5, rtol=0)
