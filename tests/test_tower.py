"""The merging tower against transformers' own towers and an AuroraCap-style reference."""

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from aurora.vision.tower import MergingVisionTower

from .test_merge import reference_merge

SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, image_size=56, patch_size=14)


def make(kind, **overrides):
    torch.manual_seed(0)
    if kind == "clip":
        return CLIPVisionModel(CLIPVisionConfig(**{**SIZES, **overrides})).eval()
    return SiglipVisionModel(SiglipVisionConfig(**{**SIZES, **overrides})).eval()


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("layer", [-2, -1, 0, 2])
def test_ratio_one_equals_transformers_hidden_states(kind, layer):
    model = make(kind)
    tower = MergingVisionTower(model, feature_layer=layer)
    pixels = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        expected = model(pixels, output_hidden_states=True).hidden_states[layer]
        out = tower(pixels, 1.0)
    if kind == "clip":
        expected = expected[:, 1:]  # CLS dropped
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=0)
    assert torch.all(out.sizes == 1)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_transformers_interpolation_mode_equals_transformers(kind):
    model = make(kind)
    tower = MergingVisionTower(model, feature_layer=-1, position_interpolation="transformers")
    pixels = torch.randn(2, 3, 84, 70)  # 6 x 5 patches on a 4 x 4 table
    with torch.no_grad():
        expected = model(pixels, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states[-1]
        out = tower(pixels)
    torch.testing.assert_close(out.features, expected[:, 1:] if kind == "clip" else expected, atol=1e-5, rtol=0)


def test_auroracap_interpolation_uses_nudged_scale_factor():
    model = make("clip")
    tower = MergingVisionTower(model, feature_layer=0, position_interpolation="auroracap")
    table = model.embeddings.position_embedding.weight  # (1 + 16, C)
    grid = table[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, scale_factor=(6.1 / 4, 5.1 / 4), mode="bicubic").permute(0, 2, 3, 1).reshape(30, -1)
    with torch.no_grad():
        positions = tower._positions(6, 5)[0]
    assert positions.shape == (31, 32)
    torch.testing.assert_close(positions[1:], expected)
    torch.testing.assert_close(positions[0], table[0])


def auroracap_reference(model, pixels, r, layers_to_run):
    """AuroraCap's encoder written out plainly: eager softmax attention, ToMe after the residual."""
    hidden = model.embeddings(pixels)
    hidden = model.pre_layrnorm(hidden)
    size = torch.ones(hidden.shape[0], hidden.shape[1], 1)
    for layer in model.encoder.layers[:layers_to_run]:
        attn = layer.self_attn
        n, t, c = hidden.shape
        x = layer.layer_norm1(hidden)
        split = lambda y: y.view(n, t, attn.num_heads, -1).transpose(1, 2)
        q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
        weights = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1)
        hidden = hidden + attn.out_proj((weights @ v).transpose(1, 2).reshape(n, t, c))
        metric = k.mean(dim=1)
        outs, sizes = [], []
        for i in range(n):  # size-weighted mean: mean(x * size) / mean(size) over each group
            weighted_mean, counts = reference_merge(hidden[i] * size[i], metric[i], r)
            size_mean, _ = reference_merge(size[i], metric[i], r)
            outs.append(weighted_mean / size_mean)
            sizes.append(size_mean * counts)
        hidden, size = torch.stack(outs), torch.stack(sizes)
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return hidden[:, 1:], size[:, 1:]


@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_merging_matches_auroracap_reference(ratio):
    model = make("clip", num_hidden_layers=3, image_size=84)  # 36 patches
    tower = MergingVisionTower(model, feature_layer=-2)
    pixels = torch.randn(2, 3, 84, 84)
    r = tower.merges_per_layer(84, 84, ratio)
    assert r > 0
    with torch.no_grad():
        out = tower(pixels, ratio)
        features, sizes = auroracap_reference(model, pixels, r, layers_to_run=2)
    torch.testing.assert_close(out.features, features, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.sizes, sizes)


def test_proportional_attention_is_an_option_that_changes_merged_outputs():
    model = make("clip", image_size=84)
    plain = MergingVisionTower(model, proportional_attention=False)
    proportional = MergingVisionTower(model, proportional_attention=True)
    pixels = torch.randn(1, 3, 84, 84)
    with torch.no_grad():
        torch.testing.assert_close(plain(pixels, 1.0).features, proportional(pixels, 1.0).features)  # sizes all 1
        assert not torch.allclose(plain(pixels, 0.3).features, proportional(pixels, 0.3).features)


def test_gradients_flow_through_merging():
    model = make("clip", image_size=84)
    tower = MergingVisionTower(model).train()
    out = tower(torch.randn(2, 3, 84, 84), 0.3)
    out.features.sum().backward()
    assert model.encoder.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_frame_difference_input_lets_the_tower_see_change():
    import numpy as np

    from aurora.vision.preprocess import FrameTransform

    frames = np.zeros((3, 64, 64, 3), np.uint8)
    frames[1, :, 10:20] = 255  # something appears in frame 1 only
    pixels = FrameTransform(64, temporal="difference")(frames)
    plain = FrameTransform(64)(frames)
    assert pixels.shape == (3, 6, 64, 64)
    torch.testing.assert_close(pixels[:, :3], plain)
    assert torch.all(pixels[0, 3:] == 0)  # the first frame has no previous frame
    torch.testing.assert_close(pixels[1, 3:], plain[1] - plain[0])
    torch.testing.assert_close(pixels[2, 3:], plain[2] - plain[1])
    model = make("clip", num_channels=6, image_size=64, patch_size=8)
    out = MergingVisionTower(model)(pixels, 0.5)
    assert out.features.shape[0] == 3


@pytest.mark.parametrize("square, background", [(255, 0), (0, 255), (200, 60)])
@pytest.mark.parametrize("dx, dy", [(3, 0), (-3, 0), (0, 3), (0, -3)])
def test_motion_input_carries_the_direction_whatever_the_contrast(square, background, dx, dy):
    import numpy as np

    from aurora.vision.preprocess import FrameTransform

    frames = np.full((3, 64, 64, 3), background, np.uint8)
    for t in range(3):  # a 16 px square moving (dx, dy) pixels per frame
        top, left = 24 + t * dy, 24 + t * dx
        frames[t, top : top + 16, left : left + 16] = square
    pixels = FrameTransform(64, temporal="motion")(frames)
    assert pixels.shape == (3, 8, 64, 64)
    torch.testing.assert_close(pixels[:, :6], FrameTransform(64, temporal="difference")(frames))
    assert torch.all(pixels[0, 6:] == 0)  # no previous frame, no flow
    u, v = pixels[1:, 6].sum().item(), pixels[1:, 7].sum().item()
    along, across = (u, v) if dx else (v, u)
    assert np.sign(along) == np.sign(dx + dy) and abs(along) > 10 * abs(across)


def test_static_frames_have_no_motion():
    import numpy as np

    from aurora.vision.preprocess import FrameTransform

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), 4, axis=0)
    assert torch.all(FrameTransform(64, temporal="motion")(frames)[:, 3:] == 0)


@pytest.mark.parametrize("shape, sigma", [((4, 3, 64, 48), 2.0), ((2, 3, 5, 7), 0.2), ((1, 2, 9, 9), 3.0)])
def test_motion_blur_equals_a_padded_depthwise_convolution(shape, sigma):
    """The banded-matrix blur behind the motion channels against the textbook one: replicate
    padding, then a 1-D Gaussian convolution along each axis (radius wider than the image too)."""
    from aurora.vision.preprocess import _gaussian_blur

    torch.manual_seed(0)
    x = torch.randn(shape) * 50
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t / sigma).square() / 2)
    kernel = kernel / kernel.sum()
    c = shape[1]
    padded = F.pad(x, (radius,) * 4, mode="replicate") if radius < min(shape[-2:]) else \
        x[..., torch.arange(-radius, shape[-2] + radius).clamp(0, shape[-2] - 1), :][
            ..., torch.arange(-radius, shape[-1] + radius).clamp(0, shape[-1] - 1)]
    expected = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    expected = F.conv2d(expected, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    torch.testing.assert_close(_gaussian_blur(x, sigma), expected, rtol=1e-5, atol=1e-4)
