"""Media memory follows the model's input: declared sizes are capped, frames are scaled down while
decoding, odd paths say what they are. The peak-RSS check over the extreme corpus runs in a
subprocess (slow); the rest here is fast and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from aurora import media
from aurora.errors import ConfigError, MediaError
from aurora.media.limits import MediaLimits, decode_size
from aurora.testing.hostile_media import extreme_corpus, write_gif_screen, write_png_mov, write_png_stream
from aurora.testing.media import make_frames, write_image, write_video
from aurora.vision.preprocess import FrameTransform

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def extreme(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extreme")
    return {case.name: case for case in extreme_corpus(str(folder), large=False)}


def _one_line_refusal(path, pattern):
    with pytest.raises(MediaError) as info:
        media.load_visual(path, size=64)
    message = str(info.value)
    assert "\n" not in message and pattern in message, message
    return message


@pytest.mark.parametrize("name", ["png_12000_1bit", "png_1x100000000"])
def test_declared_megapixels_over_the_limit_are_refused_naming_the_setting(extreme, name):
    message = _one_line_refusal(extreme[name].path, "over the limit of 40 megapixels")
    assert "AURORA_MAX_PIXELS=" in message


@pytest.mark.parametrize("name", ["png_6000x1", "png_1x6000", "mp4_2x2000", "mov_png_claims_6000x1"])
def test_strips_are_refused_by_aspect_ratio(extreme, name):
    message = _one_line_refusal(extreme[name].path, "over the limit of 32:1")
    assert "AURORA_MAX_ASPECT=" in message


def test_a_gif_screen_over_the_limit_is_refused_by_name(extreme):
    message = _one_line_refusal(extreme["gif_screen_16000"].path, "declares 16000x16000 frames")
    assert "AURORA_MAX_PIXELS=256000000" in message


def test_frames_bigger_than_the_container_says_are_never_allocated(extreme):
    # the PNG frames of a .mov claim 16000x16000: FFmpeg's max_pixels makes the decoder refuse them
    _one_line_refusal(extreme["mov_png_claims_16000"].path, "AURORA_MAX_PIXELS")


@pytest.mark.parametrize("name", ["png_32x1", "png_1x1", "mp4_64x2"])
def test_small_odd_frames_within_the_limits_load(extreme, name):
    frames = media.load_visual(extreme[name].path, size=64)
    assert frames.array.dtype == np.uint8 and frames.array.shape[-1] == 3


def test_limits_are_raised_by_environment(tmp_path, monkeypatch):
    path = write_png_stream(str(tmp_path / "wide.png"), 400, 10)  # 40:1
    with pytest.raises(MediaError, match="AURORA_MAX_ASPECT=40"):
        media.load_visual(path)
    monkeypatch.setenv("AURORA_MAX_ASPECT", "40")
    assert media.load_visual(path).array.shape == (1, 10, 400, 3)
    monkeypatch.setenv("AURORA_MAX_PIXELS", "3999")
    with pytest.raises(MediaError, match="over the limit of 0.003999 megapixels"):
        media.load_visual(path)
    monkeypatch.setenv("AURORA_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="AURORA_MAX_PIXELS must be a number"):
        media.load_visual(path)


def test_decode_size_is_clip_shortest_edge_and_never_upscales():
    assert decode_size(3840, 2160, 378) == (672, 378)  # int(378 * 3840 / 2160)
    assert decode_size(2160, 3840, 378) == (378, 672)
    assert decode_size(300, 200, 378) == (300, 200)
    assert decode_size(3840, 2160, None) == (3840, 2160)


def test_video_is_scaled_while_decoding(tmp_path):
    frames = make_frames(4, 192, 320)
    path = write_video(tmp_path / "c.mp4", frames)
    full = media.load_visual(path, num_frames=4)
    small = media.load_visual(path, num_frames=4, size=48)
    assert full.array.shape == (4, 192, 320, 3)
    assert small.array.shape == (4, 48, 80, 3)
    assert small.indices == full.indices
    # the same picture: a box-averaged full frame is close to the frame decoded small
    box = full.array.reshape(4, 48, 4, 80, 4, 3).mean(axis=(2, 4))
    assert np.abs(box - small.array).mean() < 6


def test_rotated_video_is_scaled_after_turning(tmp_path):
    path = write_video(tmp_path / "r.mp4", make_frames(2, 96, 160), rotation=90)
    frames = media.load_visual(path, num_frames=2, size=48)
    assert frames.array.shape == (2, 80, 48, 3)  # upright: portrait


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_image_is_scaled_while_decoding(tmp_path, ext):
    array = np.zeros((800, 1200, 3), np.uint8)
    array[:, 600:] = 255
    path = write_image(tmp_path / f"i{ext}", array)
    frames = media.load_visual(path, size=100)
    assert frames.array.shape == (1, 100, 150, 3)
    assert frames.array[0, :, :70].mean() < 10 and frames.array[0, :, 80:].mean() > 245


def test_sixteen_bit_grey_still_scales_to_full_range(tmp_path):
    from PIL import Image

    grey = np.array([[0, 65535], [32768, 65535]], dtype=np.uint16)
    path = str(tmp_path / "g.png")
    Image.fromarray(grey).save(path)
    frames = media.load_visual(path)
    assert frames.array[0, :, :, 0].tolist() == [[0, 255], [128, 255]]


def test_transform_crops_extreme_strips_before_resizing_and_matches_ordinary_frames(monkeypatch):
    from aurora.vision import preprocess

    transform = FrameTransform(size=32)
    generator = torch.Generator().manual_seed(0)
    ordinary = torch.randint(0, 256, (2, 40, 90, 3), dtype=torch.uint8, generator=generator).numpy()
    strip = np.zeros((1, 4, 3000, 3), np.uint8)
    strip[..., 0] = (np.arange(3000) * 13 % 256)[None, None]  # detail everywhere, the centre included
    cropped_ordinary, cropped_strip = transform(ordinary), transform(strip)
    monkeypatch.setattr(preprocess, "MAX_CROP_ASPECT", 10**9)  # the plain CLIP path: 32 x 24,000 floats
    assert torch.equal(cropped_ordinary, transform(ordinary))  # within 4:1 nothing changes
    reference = transform(strip)
    assert cropped_strip.shape == reference.shape == (1, 3, 32, 32)
    assert (cropped_strip - reference).abs().max() < 0.05  # ~3 grey levels


def test_symlink_loop_and_dangling_link_say_so(tmp_path):
    loop = tmp_path / "loop.mp4"
    os.symlink(loop.name, loop)
    with pytest.raises(MediaError, match="symlink loop"):
        media.load_visual(str(loop))
    dangling = tmp_path / "gone.mp4"
    os.symlink("missing.mp4", dangling)
    with pytest.raises(MediaError, match="symlink to a missing file"):
        media.load_visual(str(dangling))


def test_a_stream_ffmpeg_cannot_decode_is_refused_by_loader_and_probe(tmp_path):
    path = write_video(tmp_path / "c.mp4", make_frames(4, 32, 32))
    data = open(path, "rb").read()
    (tmp_path / "bad.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))  # a codec id with no decoder
    for load in (media.load_visual, media.probe_video):
        with pytest.raises(MediaError, match="no decoder for its video stream"):
            load(str(tmp_path / "bad.mp4"))


def test_nul_byte_in_path(tmp_path):
    with pytest.raises(MediaError, match="NUL byte"):
        media.load_visual(str(tmp_path / "a\x00b.mp4"))


@pytest.mark.slow
def test_cli_refuses_a_declared_giant_with_one_line_and_exit_2(tmp_path):
    path = write_gif_screen(str(tmp_path / "screen.gif"), 16000)
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-m", "aurora.cli", "caption", path], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "AURORA_MAX_PIXELS" in lines[0], done.stderr


# Peak RSS above the loaded model (which has captioned one clip), per file, in one subprocess.
# Measured 2026-12: at most ~500 MB (a 6000x6000 16-bit greyscale PNG, 36 MP); every refused file
# a few MB. Before the fix the 16000x16000 GIF alone took 5.2 GB.
RSS_BOUND_MB = 600


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux per-file peak RSS")
def test_peak_memory_over_the_extreme_corpus_is_bounded(tmp_path):
    cases = extreme_corpus(str(tmp_path), large=True)
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run(
        [sys.executable, "-m", "aurora.testing.caption_probe", "--warmup",
         os.path.join(REPO, "examples", "clip_00003.mp4"), *[c.path for c in cases]],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    by_path = {entry["path"]: entry for entry in report["results"]}
    for case in cases:
        entry = by_path[case.path]
        assert entry["outcome"] == ("ok" if case.expect == "ok" else "refused"), (case.name, entry)
        if entry["outcome"] == "refused":
            assert "\n" not in entry["message"]
        else:
            assert entry["caption"].strip()
        assert entry["peak_above_baseline_mb"] < RSS_BOUND_MB, (case.name, entry)


def test_formats_without_streams_before_probing_still_load(tmp_path):
    """MPEG-TS exposes no streams before probing, so PyAV refuses per-stream options there; such
    a file (here named .mp4, as phones and recorders do) must still load."""
    import av

    path = str(tmp_path / "ts.mp4")
    with av.open(path, "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i, array in enumerate(make_frames(8, 64, 64)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    frames = media.load_visual(path, num_frames=4, size=32)
    assert frames.array.shape == (4, 32, 32, 3)
