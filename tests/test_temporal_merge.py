"""merge_across_time: tokens that stay alike over frames become one, changes and scene cuts stay;
wired into the composed families (per-frame blocks) and Qwen2-VL (M-RoPE positions kept)."""

import pytest
import torch
import torch.nn.functional as F

from aurora.errors import ConfigError
from aurora.vision.reduce import split_ratio
from aurora.vision.temporal import frame_similarity, merge_across_time, scene_boundaries


def static_video(t=4, n=6, c=8, seed=0):
    torch.manual_seed(seed)
    frame = torch.randn(n, c)
    return frame.expand(t, n, c).clone()


def test_a_static_video_merges_to_its_first_frame_and_a_change_is_kept():
    video = static_video()
    video[2, 3] = torch.randn(8)  # one place changes in frame 2 and stays changed
    video[3, 3] = video[2, 3]
    out = merge_across_time(video, keep=7)
    assert out.first.tolist() == list(range(6)) + [2 * 6 + 3]  # frame 0, then the change, in time order
    assert out.sizes.flatten().tolist() == [4, 4, 4, 2, 4, 4, 2]  # sizes add up over the merged frames
    torch.testing.assert_close(out.tokens[6], video[2, 3])
    assert out.source.view(4, 6)[3, 3] == 6 and out.source.view(4, 6)[1, 3] == 3  # where each input went
    assert out.frames(6).tolist() == [0] * 6 + [2]


def test_merging_is_size_weighted_and_sizes_are_carried():
    video = static_video(t=2, n=2, c=4)
    video[1] += 0.01 * torch.randn(2, 4)  # alike, not equal
    sizes = torch.tensor([[[1.0], [2.0]], [[3.0], [1.0]]])
    out = merge_across_time(video, keep=2, sizes=sizes)
    assert out.first.tolist() == [0, 1] and out.source.tolist() == [0, 1, 0, 1]
    assert out.sizes.flatten().tolist() == [4.0, 3.0]
    torch.testing.assert_close(out.tokens, (video * sizes).sum(0) / sizes.sum(0))


def test_a_scene_cut_is_a_boundary_and_is_never_merged_into_the_past():
    video = torch.cat([static_video(t=3, seed=0), static_video(t=3, seed=1)])  # a cut at frame 3
    assert scene_boundaries(video).tolist() == [True, False, False, True, False, False]
    assert frame_similarity(video)[1] == pytest.approx(1.0)
    out = merge_across_time(video, keep=12)
    assert out.first.tolist() == list(range(6)) + list(range(18, 24))  # both segments' first frames


def test_what_is_new_is_not_merged_into_the_past_to_reach_a_low_keep():
    torch.manual_seed(0)
    a, b, c, new = torch.randn(4, 64)  # random directions in 64-d: |cosine| far below MIN_SIMILARITY
    video = torch.stack([a, a + 0.01 * torch.randn(64), b, c]).expand(4, 4, 64).clone()
    video[2:, 3] = new  # an object appears at place 3 in frame 2 and stays
    out = merge_across_time(video, keep=4)
    assert 2 * 4 + 3 in out.first.tolist()  # it stays a token, first seen in frame 2 ...
    torch.testing.assert_close(out.tokens[out.first.tolist().index(11)], new)
    assert out.sizes.flatten().tolist() == [8, 4, 2, 2]  # ... the two alike background places merged instead
    forced = merge_across_time(video, keep=4, min_similarity=None)  # any best match merges: the object is lost
    assert forced.first.tolist() == [0, 1, 2, 3]
    assert max(F.cosine_similarity(forced.tokens, new[None], dim=-1)) < 0.9


def test_fewer_kept_than_a_frame_merges_across_places_in_time_order():
    video = static_video(t=5, n=16, c=8)
    out = merge_across_time(video, keep=3)
    assert out.tokens.shape == (3, 8) and out.sizes.sum() == 5 * 16
    assert out.first.tolist() == sorted(out.first.tolist())
    assert out.source.max() == 2 and len(out.source) == 80
    for k in range(3):  # every output is the size-weighted mean of the inputs it stands for
        torch.testing.assert_close(out.tokens[k], video.view(-1, 8)[out.source == k].mean(0), atol=1e-5, rtol=0)


def test_nothing_merges_at_full_keep():
    video = torch.randn(3, 5, 4)
    out = merge_across_time(video, keep=15)
    torch.testing.assert_close(out.tokens, video.view(15, 4))
    assert out.source.tolist() == list(range(15))


def test_split_ratio():
    assert split_ratio("tome", 0.2) == (0.2, None)
    assert split_ratio("temporal", 0.05) == (1.0, 0.05)
    assert split_ratio("both", 0.04) == (0.1, 0.04)  # ToMe to its floor, then across time
    assert split_ratio("both", 0.25) == (0.25, 0.25)  # ToMe keeps a little more than asked: trimmed across time
    assert split_ratio("both", 1.0) == (1.0, None)
    with pytest.raises(ConfigError, match="reduction must be one of"):
        split_ratio("pool", 0.5)


# ---- wired into the families ---------------------------------------------------------------------


def test_a_composed_model_pays_for_a_repeated_frame_once(xtuner_ckpt, tmp_path):
    import aurora
    from aurora.testing.media import make_frames, write_video

    model = aurora.load(xtuner_ckpt)
    model.preset.reducer.method = "temporal"
    patches = model.tower.tokens_per_frame(64, 64, 1.0)
    torch.manual_seed(0)
    still = torch.randn(1, 3, 64, 64).expand(4, -1, -1, -1)  # the same frame four times
    with torch.no_grad():
        blocks = model.encode(still, 0.25)  # a quarter of 4 frames' tokens: one frame's worth
        assert [len(b) for b in blocks] == [patches, 0, 0, 0]
        pixels = torch.randn(4, 3, 64, 64)
        blocks = model.encode(pixels, 0.3)
        out = model.tower(pixels, 1.0)
        expected = merge_across_time(model.connector(out.features), round(0.3 * 4 * patches), out.sizes)
    assert sum(len(b) for b in blocks) == round(0.3 * 4 * patches)
    torch.testing.assert_close(torch.cat(blocks), expected.tokens, atol=0, rtol=0)
    assert [len(b) for b in blocks] == torch.bincount(expected.frames(patches), minlength=4).tolist()
    clip = write_video(tmp_path / "clip.mp4", make_frames(12, 64, 64), fps=8)
    for method, tower_ratio in (("temporal", 1.0), ("both", 0.25)):  # the whole prompt path, per-frame blocks
        model.preset.reducer.method = method
        reply = model.caption(clip, num_frames=4, token_kept_ratio=0.25, max_new_tokens=3)
        assert reply.visual_tokens[0]["language_model"] == round(0.25 * 4 * patches)
        assert reply.visual_tokens[0]["encoder"] == 4 * model.tower.tokens_per_frame(64, 64, tower_ratio)
        assert reply.generated_tokens > 0


def test_reduction_flag_on_the_bundled_model(capsys):
    from pathlib import Path

    from aurora.cli import main

    clip = str(Path(__file__).parent.parent / "examples" / "clip_00003.mp4")
    assert main(["caption", clip, "--reduction", "both", "--token-kept-ratio", "0.05", "--profile"]) == 0
    out = capsys.readouterr()
    assert "the background is" in out.out.lower()
    assert f"visual tokens: patches 512 -> encoder {8 * 11} -> language_model {round(0.05 * 512)}" in out.err
    assert main(["caption", clip, "--reduction", "pool"]) == 2  # a one-line usage error
    assert "--reduction: invalid choice: 'pool'" in capsys.readouterr().err


def test_training_merges_across_time_as_inference_does_and_learns_through_it(xtuner_ckpt):
    import aurora

    model = aurora.load(xtuner_ckpt)
    model.preset.reducer.method = "both"
    torch.manual_seed(0)
    video, image = torch.randn(4, 3, 64, 64), torch.randn(1, 3, 64, 64)
    visuals = model.encode_visuals([video, image], 0.25)
    with torch.no_grad():
        for trained, inferred in zip(visuals, (model.encode(video, 0.25), model.encode(image, 0.25))):
            assert [b.shape for b in trained] == [b.shape for b in inferred]
            assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(trained, inferred))
    assert sum(len(b) for b in visuals[0]) == round(0.25 * 4 * model.tower.tokens_per_frame(64, 64, 1.0))
    sum(b.sum() for b in visuals[0]).backward()  # the merged tokens carry gradients to the connector
    assert model.connector.parameters().__next__().grad.abs().sum() > 0


def test_eval_synth_names_a_bad_reduction(tmp_path, capsys):
    from aurora.cli import main

    (tmp_path / "test.jsonl").write_text("")
    args = ["eval", "synth", "--data", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "out")]
    assert main(args + ["--reduction", "pool"]) == 2
    assert "--reduction takes tome, temporal, both, reuse, got 'pool'" in capsys.readouterr().err
    assert main(args + ["--reduction", "tome,both"]) == 2  # a list only with --sweep
    assert "--reduction takes one reducer without --sweep" in capsys.readouterr().err


def test_a_call_chooses_its_reduction_without_changing_the_model():
    """`caption(..., reduction=...)` reduces that call only: the preset, later calls and other
    threads' calls keep the model's method; the reply says which method it used."""
    import threading
    from pathlib import Path

    import aurora

    model = aurora.load()
    clip = str(Path(__file__).parent.parent / "examples" / "clip_00003.mp4")
    both = model.caption(clip, token_kept_ratio=0.05, reduction="both", max_new_tokens=2)
    assert both.reduction == "both" and both.visual_tokens[0]["language_model"] == round(0.05 * 512)
    assert model.preset.reducer.method == "tome" and model.reduction == "tome"
    tome = model.caption(clip, token_kept_ratio=0.2, max_new_tokens=2)
    assert tome.reduction == "tome" and tome.visual_tokens[0]["language_model"] == 8 * 16
    [batched] = model.caption_batch([clip], token_kept_ratio=0.05, reduction="temporal", max_new_tokens=2)
    assert batched.reduction == "temporal" and batched.visual_tokens[0]["encoder"] == 512  # the tower ran whole

    seen = []
    with model.reducing("both"):
        other = threading.Thread(target=lambda: seen.append(model.reduction))
        other.start()
        other.join()
        assert model.reduction == "both"
    assert seen == ["tome"] and model.reduction == "tome"
    with pytest.raises(ConfigError, match="reduction 'pool' is not implemented"):
        model.caption(clip, reduction="pool")
    assert model.reduction == "tome"


@pytest.mark.parametrize("method, ratio", [("tome", 0.2), ("temporal", 0.1), ("both", 0.05), ("reuse", 0.1)])
def test_token_groups_are_the_tokens_that_reach_the_language_model(method, ratio):
    """Every patch is numbered with the visual token it ended in: as many numbers as tokens reach
    the LM, and a token merged across frames has one number in every frame it covers."""
    import aurora

    model = aurora.load()
    torch.manual_seed(0)
    frame = torch.randn(1, 8, 64, 64)
    video = frame.repeat(6, 1, 1, 1)  # a still video: its places merge across time
    video[3:, :, :16, :16] += 2.0  # a corner changes at frame 3 and stays changed
    with model.reducing(method):
        groups = model.token_groups(video, ratio)
        _, counts = model.encode_counted(video, ratio)
    assert groups.shape == (6, 8, 8)
    assert groups.unique().tolist() == list(range(counts["language_model"]))
    across = {int(g) for g in groups[0].unique()} & {int(g) for g in groups[5].unique()}
    assert bool(across) == (method != "tome")  # only merging across time joins frame 0 and frame 5


def test_the_gui_reduces_as_its_dropdown_says_and_paints_tokens_across_frames():
    from pathlib import Path

    from aurora.serve.gui import ModelCache, answer, new_session
    from aurora.serve.token_view import token_view

    import aurora

    model = aurora.load()
    clip = str(Path(__file__).parent.parent / "examples" / "clip_00003.mp4")
    cache = ModelCache("bundled", model)
    *_, last = answer(cache, new_session(), [], clip, None, "", "", 0.05, "both", 8, 0.0, 1.0, 1, 4)
    history, picture, stats, session, _ = last
    assert "reduced with | both" in stats and f"8 frames, **{round(0.05 * 512)} visual tokens**" in stats
    assert model.reduction == "tome"  # the dropdown chose this answer's method only
    frames = session["visuals"][0][1].array
    with model.reducing("both"):
        groups = model.token_groups(model.transform(frames), 0.05)
    colours = [{tuple(c) for c in tile.reshape(-1, 3)} for tile in (picture[:192, :192], picture[:192, 196:388])]
    assert int(groups.max()) + 1 == round(0.05 * 512)
    assert colours[0] & colours[1]  # frame 1 shows tokens merged into frame 0's: the same colours
    tome = token_view(model, frames, 0.05, "tome")
    assert not ({tuple(c) for c in tome[:192, :192].reshape(-1, 3)} & {tuple(c) for c in tome[:192, 196:388].reshape(-1, 3)})
