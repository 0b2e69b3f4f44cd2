"""Skipping repeated patches before the tower (aurora.vision.reuse) and the tower's reused path."""

import pytest
import torch

from aurora.vision.reuse import attend_per_frame, change_scores, fill, plan
from aurora.vision.tower import MergingVisionTower

from .test_tower import make


def still_video(frames=4, size=56, changed=((1, 0, 0), (2, 1, 2), (3, 3, 3)), seed=0):
    """(T, 3, S, S) frames that repeat frame 0 except one 14 x 14 patch (frame, row, col) each."""
    torch.manual_seed(seed)
    video = torch.randn(1, 3, size, size).repeat(frames, 1, 1, 1)
    for frame, row, col in changed:
        video[frame:, :, row * 14:(row + 1) * 14, col * 14:(col + 1) * 14] = torch.randn(3, 14, 14)
    return video


def test_plan_computes_frame_zero_and_the_most_changed_places():
    places = torch.zeros(3, 4, 2)
    places[1, 2] = 1.0  # frame 1 changes place 2 a lot, place 0 a little
    places[1, 0] = 0.1
    places[2, 2] = 1.0  # frame 2 repeats frame 1
    reuse = plan(places, budget=0.25)  # round(0.25 * 4 * 2) = 2 later places at most
    assert reuse.computed.tolist() == [[True] * 4, [True, False, True, False], [False] * 4]
    assert reuse.source.tolist() == [[0, 0, 0, 0], [1, 0, 1, 0], [1, 0, 1, 0]]
    assert reuse.counts == [4, 2, 0]
    small = plan(places, budget=0.125)  # one place: the biggest change only
    assert small.computed[1].tolist() == [False, False, True, False]
    assert change_scores(places).shape == (2, 4)


def test_fill_reads_every_place_from_its_source_frame():
    places = torch.zeros(3, 2, 1)
    places[1:, 1] = 1
    reuse = plan(places, budget=1.0)  # frame 0 whole, frame 1 place 1; frame 2 repeats frame 1
    values = torch.tensor([[10.0], [11.0], [21.0]])  # (frame 0: places 0, 1), (frame 1: place 1)
    assert fill(values, reuse)[..., 0].tolist() == [[10, 11], [10, 21], [10, 21]]


def test_attention_per_frame_equals_full_attention_when_everything_is_computed():
    torch.manual_seed(0)
    reuse = plan(torch.randn(3, 5, 4), budget=1.0)
    assert bool(reuse.computed.all())
    q, k, v = (torch.randn(15, 2, 8) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(x.view(3, 5, 2, 8).transpose(1, 2) for x in (q, k, v))).transpose(1, 2).reshape(15, 2, 8)
    torch.testing.assert_close(attend_per_frame(q, k, v, reuse), expected)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_reused_tower_with_every_patch_computed_equals_the_tower(kind):
    tower = MergingVisionTower(make(kind), feature_layer=-1)
    video = torch.randn(3, 3, 56, 56)  # nothing repeats
    with torch.no_grad():
        out, reuse = tower.forward_reused(video, budget=1.0)
        expected = tower(video, 1.0).features
    assert reuse.share == 1.0
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_one_layer_reuse_is_exact_where_pixels_repeat(kind):
    """After one layer a changed patch's state equals the whole frame's computation (the reused keys
    and values are exactly what the frame has there), and a repeated patch keeps its source frame's."""
    tower = MergingVisionTower(make(kind, num_hidden_layers=1), feature_layer=-1)
    video = still_video()
    with torch.no_grad():
        out, reuse = tower.forward_reused(video, budget=1.0)
        full = tower(video, 1.0).features
    assert reuse.counts == [16, 1, 1, 1]  # the one changed patch of each later frame
    changed = reuse.computed.clone()
    torch.testing.assert_close(out.features[changed], full[changed], atol=1e-5, rtol=0)
    static = ~changed
    assert not torch.allclose(out.features[static], full[static], atol=1e-3)  # the approximation: context changed
    torch.testing.assert_close(out.features[static], out.features[reuse.source[static], static.nonzero()[:, 1]])


def test_reused_tower_with_a_small_budget_runs_fewer_tokens_and_keeps_the_grid():
    tower = MergingVisionTower(make("siglip"), feature_layer=-1)
    video = torch.randn(8, 3, 56, 56)
    with torch.no_grad():
        out, reuse = tower.forward_reused(video, budget=0.25)
    assert out.features.shape == (8, 16, 32)
    assert reuse.counts[0] == 16 and sum(reuse.counts[1:]) == round(0.25 * 16 * 7)
    uncomputed = ~reuse.computed
    frames = reuse.source[uncomputed]
    places = uncomputed.nonzero()[:, 1]
    torch.testing.assert_close(out.features[uncomputed], out.features[frames, places])  # copies of their source


# ---- the composed families (AuroraCap-shaped, PLLaVA) --------------------------------------------


def test_a_composed_model_computes_a_repeated_frame_once(xtuner_ckpt):
    import aurora

    model = aurora.load(xtuner_ckpt)
    model.preset.reducer.method = "reuse"
    patches = model.tower.tokens_per_frame(64, 64, 1.0)
    torch.manual_seed(0)
    still = torch.randn(1, 3, 64, 64).expand(4, -1, -1, -1)  # the same frame four times
    with torch.no_grad():
        blocks, counts = model.encode_counted(still, 0.5)
        frame0 = model.connector(model.tower(still[:1], 1.0).features)[0]
    assert counts == {"patches": 4 * patches, "encoder": patches, "language_model": 2 * patches}
    assert len(blocks) == 4 and len(blocks[0]) == patches  # frame 0 first, then copies of it
    torch.testing.assert_close(blocks[0], frame0, atol=1e-5, rtol=0)
    later = torch.cat(blocks[1:])
    assert len(later) == patches and (later[:, None] - frame0[None]).abs().amax(-1).amin(1).max() < 1e-5  # all copies


def test_a_composed_model_merges_the_reused_grid_across_time(xtuner_ckpt, tmp_path):
    import aurora
    from aurora.testing.media import make_frames, write_video
    from aurora.vision.temporal import merge_across_time

    model = aurora.load(xtuner_ckpt)
    model.preset.reducer.method = "reuse"
    patches = model.tower.tokens_per_frame(64, 64, 1.0)
    torch.manual_seed(0)
    pixels = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        blocks, counts = model.encode_counted(pixels, 0.3)
        out, reuse = model.tower.forward_reused(pixels, 0.3)
        grid = model.connector(out.features)
    keep = round(0.3 * 4 * patches)
    merged = merge_across_time(grid, keep)  # the reused grid, merged across time to the ratio
    torch.testing.assert_close(torch.cat(blocks), merged.tokens, atol=0, rtol=0)
    assert [len(b) for b in blocks] == torch.bincount(merged.frames(patches), minlength=4).tolist()
    assert counts["encoder"] == patches + round(0.3 * patches * 3) == int(reuse.computed.sum())
    clip = write_video(tmp_path / "clip.mp4", make_frames(12, 64, 64), fps=8)
    reply = model.caption(clip, num_frames=4, token_kept_ratio=0.25, max_new_tokens=3)
    assert reply.visual_tokens[0]["language_model"] == round(0.25 * 4 * patches)
    assert reply.visual_tokens[0]["encoder"] < 4 * patches and reply.generated_tokens > 0
    image = model.caption(str(__import__("pathlib").Path(__file__).parent.parent / "examples" / "red_circle.png"),
                          token_kept_ratio=0.5, max_new_tokens=2)  # an image under "reuse": ToMe
    assert image.visual_tokens[0]["encoder"] == model.tower.tokens_per_frame(64, 64, 0.5)


def test_reuse_flag_on_the_bundled_model(capsys):
    from pathlib import Path

    from aurora.cli import main

    clip = str(Path(__file__).parent.parent / "examples" / "clip_00003.mp4")
    assert main(["caption", clip, "--reduction", "reuse", "--token-kept-ratio", "0.25", "--profile"]) == 0
    out = capsys.readouterr()
    assert "the background is" in out.out.lower()
    assert "visual tokens: patches 512 -> encoder " in out.err and f"-> language_model {round(0.25 * 512)}" in out.err


def test_training_encodes_under_reuse_as_inference_does(xtuner_ckpt):
    import aurora

    model = aurora.load(xtuner_ckpt)
    model.preset.reducer.method = "reuse"
    video = torch.randn(1, 3, 64, 64).repeat(3, 1, 1, 1)
    video[2, :, :16, :16] += 1.0  # one corner changes in the last frame
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trained = model.encode_visuals([video, image], 0.25)
        inferred = [model.encode(video, 0.25), model.encode(image, 0.25)]
        counts = model.encode_counted(video, 0.25)[1]
    for got, want in zip(trained, inferred):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    assert sum(len(block) for block in trained[0]) == counts["language_model"] == round(0.25 * counts["patches"])
    model.zero_grad()
    torch.cat(model.encode_visuals([video], 0.25)[0]).square().sum().backward()  # the tower learns through it
    grads = [p.grad for p in model.tower.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_places_of_several_patches_are_computed_whole():
    """group=2: a place is a 2 x 2 square of patches (what a pixel shuffle makes one token of); a
    square with one changed patch is computed whole, exactly as the whole frame would give."""
    tower = MergingVisionTower(make("siglip", num_hidden_layers=1), feature_layer=-1)
    video = still_video(changed=((1, 0, 0), (2, 3, 2)))  # patch (0, 0) in square 0, (3, 2) in square 3
    with torch.no_grad():
        out, squares = tower.forward_reused(video, budget=1.0, group=2)
        full = tower(video, 1.0).features
    assert squares.computed.tolist() == [[True] * 4, [True, False, False, False], [False, False, False, True],
                                         [False] * 4]
    square_of = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3])
    computed = squares.computed[:, square_of]  # per patch
    torch.testing.assert_close(out.features[computed], full[computed], atol=1e-5, rtol=0)
    static = ~computed
    torch.testing.assert_close(out.features[static], out.features[squares.source[:, square_of][static],
                                                                  static.nonzero()[:, 1]])
