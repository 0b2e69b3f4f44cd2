"""ToMe merging as pure functions: counts, invariants and AuroraCap's ordering."""

import math

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from aurora.vision import merge as tome
from aurora.vision.tower import MergingVisionTower


def reference_merge(x, metric, r, protect_first=True):
    """Independent, loop-based bipartite soft matching with AuroraCap's rules (one sample)."""
    t = x.shape[0]
    r = min(r, (t - int(protect_first)) // 2)
    a_pos, b_pos = list(range(0, t, 2)), list(range(1, t, 2))
    m = metric / metric.norm(dim=-1, keepdim=True)
    best = []
    for i, pa in enumerate(a_pos):
        sims = [float(m[pa] @ m[pb]) for pb in b_pos]
        score = -math.inf if (protect_first and i == 0) else max(sims)
        best.append((score, i, sims.index(max(sims))))
    order = sorted(best, key=lambda s: -s[0])  # highest score first
    merged = order[:r]
    kept = sorted(i for _, i, _ in order[r:])
    sums = {j: x[b_pos[j]].clone() for j in range(len(b_pos))}
    counts = {j: 1 for j in range(len(b_pos))}
    for _, i, j in merged:
        sums[j] += x[a_pos[i]]
        counts[j] += 1
    out = [x[a_pos[i]] for i in kept] + [sums[j] / counts[j] for j in range(len(b_pos))]
    sizes = [1] * len(kept) + [counts[j] for j in range(len(b_pos))]
    return torch.stack(out), torch.tensor(sizes, dtype=x.dtype)[:, None]


@pytest.mark.parametrize("t,r", [(11, 3), (12, 5), (9, 100), (30, 1)])
def test_merge_matches_reference_order_and_values(t, r):
    torch.manual_seed(t * 31 + r)
    x, metric = torch.randn(1, t, 6), torch.randn(1, t, 4)
    m = tome.match(metric, r)
    out, size = tome.merge_wavg(m, x, torch.ones(1, t, 1))
    ref, ref_size = reference_merge(x[0], metric[0], r)
    torch.testing.assert_close(out[0], ref)
    torch.testing.assert_close(size[0], ref_size)


def test_r_is_clamped_to_half_and_zero_means_no_merge():
    metric = torch.randn(2, 9, 4)
    assert tome.match(metric, 0) is None
    assert tome.match(metric, 100).r == (9 - 1) // 2
    assert tome.match(metric, 100, protect_first=False).r == 9 // 2


def test_cls_is_never_merged_even_when_it_matches_best():
    torch.manual_seed(0)
    x = torch.randn(1, 10, 8)
    metric = torch.randn(1, 10, 8)
    metric[0, 1] = metric[0, 0]  # CLS (position 0) is identical to a B token
    m = tome.match(metric, 4)
    out, size = tome.merge_wavg(m, x, torch.ones(1, 10, 1))
    assert size[0, 0, 0] == 1
    torch.testing.assert_close(out[0, 0], x[0, 0])


def test_merging_identical_tokens_leaves_values_unchanged():
    torch.manual_seed(1)
    pairs = torch.randn(1, 8, 5)
    x = pairs.repeat_interleave(2, dim=1)  # tokens 2i and 2i+1 are identical
    m = tome.match(x, 3, protect_first=False)
    out, size = tome.merge_wavg(m, x, torch.ones(1, 16, 1))
    # each merge joins two copies of one vector, so every output token is an original vector
    for token in out[0]:
        assert torch.isclose(pairs[0], token).all(dim=-1).any()
    assert out.shape[1] == 13 and size.sum() == 16


def test_sizes_sum_and_positions_agree_with_merge():
    torch.manual_seed(2)
    x, metric = torch.randn(3, 21, 4), torch.randn(3, 21, 7)
    size = torch.rand(3, 21, 1) + 0.5
    m = tome.match(metric, 6)
    out, new_size = tome.merge_wavg(m, x, size)
    torch.testing.assert_close(new_size.sum(dim=1), size.sum(dim=1))
    positions = tome.merged_positions(m)  # (3, 21): where each token went
    expected = torch.zeros_like(out).scatter_add_(1, positions[..., None].expand(-1, -1, 4), x * size) / new_size
    torch.testing.assert_close(out, expected)


def test_merge_count_rule():
    assert tome.merge_count(729.0, 0.1, 32) == 20
    assert tome.merge_count(729.0, 1.0, 32) == 0
    with pytest.raises(ValueError):
        tome.merge_count(729.0, 0.0, 32)


@pytest.fixture(scope="module")
def tower_32_layers():
    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=32, num_attention_heads=2,
                              image_size=378, patch_size=14)
    torch.manual_seed(0)
    return MergingVisionTower(CLIPVisionModel(config).eval(), feature_layer=-2)


@pytest.mark.parametrize("ratio,tokens", [(0.1, 109), (0.2, 171), (0.4, 326), (0.8, 605), (1.0, 729)])
def test_tokens_per_frame_match_auroracap(tower_32_layers, ratio, tokens):
    assert tower_32_layers.tokens_per_frame(378, 378, ratio) == tokens
    with torch.no_grad():
        out = tower_32_layers(torch.randn(2, 3, 378, 378), ratio, track_source=True)
    assert out.features.shape == (2, tokens, 16)
    torch.testing.assert_close(out.sizes.sum(dim=1), torch.full((2, 1), 729.0))
    # every patch belongs to exactly one output token, and group sizes are the token sizes
    counts = torch.stack([torch.bincount(s, minlength=tokens) for s in out.source]).float()
    torch.testing.assert_close(counts, out.sizes[..., 0])


def test_merge_schedules_remove_the_same_total():
    assert tome.merge_schedule(18, 31) == [18] * 31  # AuroraCap: the same r in every layer
    decreasing = tome.merge_schedule(18, 31, "decreasing")
    assert sum(decreasing) == 18 * 31 and decreasing == sorted(decreasing, reverse=True)
    assert decreasing[0] > 18 > decreasing[-1]
    with pytest.raises(ValueError):
        tome.merge_schedule(18, 31, "random")


def test_decreasing_schedule_keeps_the_token_count_and_sizes(tower_32_layers):
    decreasing = MergingVisionTower(tower_32_layers.model, feature_layer=-2, merge_schedule="decreasing")
    with torch.no_grad():
        out = decreasing(torch.randn(1, 3, 378, 378), 0.2)
    assert out.tokens_per_frame == decreasing.tokens_per_frame(378, 378, 0.2) == 171  # same as constant
    torch.testing.assert_close(out.sizes.sum(), torch.tensor(729.0))
