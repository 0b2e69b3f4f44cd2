"""Tests for aurora.media: sampling rules, video/image loading, rotation, bad-input errors.

Fixtures are tiny files written with aurora.testing.media; frame contents encode their
index, so each test checks exactly which frames came back.
"""

from __future__ import annotations

import os
import struct

import av
import numpy as np
import pytest
from PIL import Image

from aurora.errors import AuroraError, ConfigError, MediaError
from aurora.media import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Frames,
    apply_rotation,
    fps_indices,
    load_image,
    load_video,
    load_visual,
    probe_video,
    segment_middle_indices,
    uniform_indices,
)
from aurora.media import _decode
from aurora.testing.media import (
    frame_index_of,
    make_frames,
    truncate_file,
    write_audio_only,
    write_image,
    write_text_file,
    write_video,
)

FPS = 8
NUM = 40  # frames in the standard clip
FORMATS = ("mp4", "mkv", "webm", "avi", "mov", "gif")


def recovered(frames: Frames) -> list[int]:
    """The index each returned frame was drawn with."""
    return [frame_index_of(frame) for frame in frames.array]


def close(a: np.ndarray, b: np.ndarray, tolerance: float = 12.0) -> bool:
    """Same shape and mean absolute difference below ``tolerance`` (lossy codecs)."""
    return a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < tolerance


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    """The standard 40-frame, 8 fps, 64x64 clip in every video format (keyframe every 10)."""
    folder = tmp_path_factory.mktemp("clips")
    frames = make_frames(NUM, 64, 64)
    return {ext: write_video(folder / f"clip.{ext}", frames, fps=FPS, gop=10) for ext in FORMATS}


def assert_one_line_naming(error: pytest.ExceptionInfo, path) -> None:
    message = str(error.value)
    assert "\n" not in message and message.strip() == message
    assert repr(os.fspath(path)) in message


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("total", [1, 2, 3, 5, 7, 8, 9, 16, 40, 100, 1001])
@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 8, 16, 32, 200])
def test_uniform_indices_is_auroracap_linspace(total, num_frames):
    expected = np.linspace(0, total - 1, min(total, num_frames), dtype=int).tolist()
    assert uniform_indices(total, num_frames) == expected


def test_uniform_indices_never_repeats_and_keeps_ends():
    assert uniform_indices(5, 8) == [0, 1, 2, 3, 4]
    assert uniform_indices(1, 8) == [0]
    assert uniform_indices(40, 8) == [0, 5, 11, 16, 22, 27, 33, 39]


@pytest.mark.parametrize("total", [1, 3, 8, 40, 97, 1000])
@pytest.mark.parametrize("segments", [1, 4, 8, 16, 32])
def test_segment_middle_indices_is_pllava_rule(total, segments):
    seg_size = float(total - 1) / segments
    expected = [int(seg_size / 2 + np.round(seg_size * i)) for i in range(segments)]
    assert segment_middle_indices(total, segments) == expected


def test_segment_middle_indices_worked_example():
    # seg = 39 / 8 = 4.875; numpy rounds 19.5 to 20 (half to even).
    assert segment_middle_indices(40, 8) == [2, 7, 12, 17, 22, 26, 31, 36]
    assert len(segment_middle_indices(3, 8)) == 8  # short clips repeat frames


def test_fps_indices_constant_rate_and_cap():
    times = np.arange(NUM) / FPS
    assert fps_indices(times, 2) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    assert fps_indices(times, 1) == [0, 8, 16, 24, 32]
    assert fps_indices(times, 1, num_frames=3) == [0, 16, 32]
    assert fps_indices(times, 100) == list(range(NUM))  # above the video rate: no repeats


def test_fps_indices_variable_rate_uses_time_not_count():
    times = [0.0, 0.1, 0.2, 1.5, 1.6, 3.0]
    # Samples at 0, 1, 2, 3 s take the frame on screen then.
    assert fps_indices(times, 1) == [0, 2, 4, 5]


@pytest.mark.parametrize(
    "call",
    [
        lambda: uniform_indices(10, 0),
        lambda: segment_middle_indices(10, 0),
        lambda: fps_indices([0.0, 1.0], 0),
        lambda: fps_indices([0.0, 1.0], -1.0),
    ],
)
def test_sampling_rejects_bad_numbers(call):
    with pytest.raises(ConfigError):
        call()


# ----------------------------------------------------------------------- video loading


@pytest.mark.parametrize("ext", FORMATS)
def test_load_8_of_40_frames_every_format(clips, ext):
    frames = load_visual(clips[ext], num_frames=8)
    expected = uniform_indices(NUM, 8)
    assert frames.array.shape == (8, 64, 64, 3) and frames.array.dtype == np.uint8
    assert frames.array.flags["C_CONTIGUOUS"]
    assert frames.indices == expected
    assert recovered(frames) == expected
    np.testing.assert_allclose(frames.timestamps, np.array(expected) / FPS, atol=0.011)
    assert frames.total_frames == NUM
    assert frames.fps == pytest.approx(FPS, rel=0.05)
    assert frames.duration == pytest.approx(NUM / FPS, abs=0.05)
    assert frames.path == clips[ext] and not frames.is_image


def test_extension_dispatch_is_case_insensitive(clips, tmp_path):
    upper = tmp_path / "CLIP.MP4"
    upper.write_bytes(open(clips["mp4"], "rb").read())
    assert recovered(load_visual(upper, num_frames=4)) == uniform_indices(NUM, 4)


@pytest.mark.parametrize("ext", ["mkv", "webm"])
def test_container_without_frame_count(clips, ext):
    with av.open(clips[ext]) as container:
        assert container.streams.video[0].frames == 0  # the premise: count not stated
    frames = load_video(clips[ext], num_frames=5)
    assert frames.total_frames == NUM
    assert recovered(frames) == uniform_indices(NUM, 5) == frames.indices


def test_middle_sampling(clips):
    frames = load_video(clips["mp4"], num_frames=8, sampling="middle")
    assert frames.indices == recovered(frames) == segment_middle_indices(NUM, 8)


def test_short_clip_uniform_gives_every_frame_middle_repeats(tmp_path):
    path = write_video(tmp_path / "short.mp4", make_frames(5))
    uniform = load_video(path, num_frames=8)
    assert uniform.indices == recovered(uniform) == [0, 1, 2, 3, 4]
    middle = load_video(path, num_frames=8, sampling="middle")
    assert len(middle.array) == 8
    assert middle.indices == recovered(middle) == segment_middle_indices(5, 8)


def test_fps_sampling(clips):
    frames = load_video(clips["mp4"], num_frames=None, fps=2)
    assert frames.indices == recovered(frames) == list(range(0, NUM, 4))
    capped = load_visual(clips["webm"], num_frames=3, fps=1)
    assert capped.indices == recovered(capped) == [0, 16, 32]


@pytest.mark.parametrize("ext", ["mp4", "mkv", "gif"])
def test_variable_frame_rate_timestamps(tmp_path, ext):
    gaps = np.where(np.arange(29) % 3 == 0, 0.5, 0.1)  # irregular spacing
    times = np.concatenate([[0.0], np.cumsum(gaps)])  # (30,) seconds
    path = write_video(tmp_path / f"vfr.{ext}", make_frames(30), timestamps=times, gop=5)
    frames = load_video(path, num_frames=8)
    assert frames.indices == recovered(frames) == uniform_indices(30, 8)
    np.testing.assert_allclose(frames.timestamps, times[frames.indices], atol=0.006)
    by_time = load_video(path, num_frames=None, fps=1)
    assert by_time.indices == fps_indices(times, 1) == recovered(by_time)


def test_uniform_sampling_seeks_instead_of_decoding_everything(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.mp4", make_frames(300), fps=30, gop=10)
    decoded = []
    real_decode = _decode._decode_packets

    def counting(container, stream):
        for frame in real_decode(container, stream):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(_decode, "_decode_packets", counting)
    frames = load_video(path, num_frames=8)
    assert recovered(frames) == frames.indices == uniform_indices(300, 8)
    # Each target costs at most one GOP (10 frames) after a seek; sequential would be 300.
    assert 8 <= len(decoded) <= 8 * 10
    assert len(decoded) < 300 // 2


def test_seek_failure_falls_back_to_sequential(clips, monkeypatch):
    def broken_seek(*args, **kwargs):
        raise _decode._SeekMiss

    monkeypatch.setattr(_decode, "read_with_seeks", broken_seek)
    frames = load_video(clips["mp4"], num_frames=8)
    assert recovered(frames) == frames.indices == uniform_indices(NUM, 8)


def test_wrong_keyframe_list_still_returns_exact_frames(clips, monkeypatch):
    real_scan = _decode.scan_timeline

    def every_frame_a_keyframe(container, stream):
        timeline = real_scan(container, stream)
        timeline.keyframes = list(timeline.pts)  # seeks land on earlier real keyframes
        return timeline

    monkeypatch.setattr(_decode, "scan_timeline", every_frame_a_keyframe)
    frames = load_video(clips["mkv"], num_frames=8)
    assert recovered(frames) == frames.indices == uniform_indices(NUM, 8)


def test_stream_without_timestamps_is_read_by_position(clips, monkeypatch):
    real_scan = _decode.scan_timeline

    def no_pts(container, stream):
        timeline = real_scan(container, stream)
        return _decode.Timeline(pts=None, keyframes=[], count=timeline.count)

    monkeypatch.setattr(_decode, "scan_timeline", no_pts)
    frames = load_video(clips["avi"], num_frames=8)
    assert recovered(frames) == frames.indices == uniform_indices(NUM, 8)
    np.testing.assert_allclose(frames.timestamps, np.array(frames.indices) / FPS, atol=1e-6)


def test_numpy_numbers_are_accepted(clips):
    frames = load_video(clips["mp4"], num_frames=np.int64(4), fps=np.float32(1.0))
    assert recovered(frames) == frames.indices == [0, 8, 16, 32]  # 4 of 0, 8, .., 32


@pytest.mark.parametrize("ext, keep", [("mp4", 0.9), ("mkv", 0.6), ("webm", 0.6)])
def test_truncated_file_with_index_returns_decodable_frames(tmp_path, ext, keep):
    path = write_video(tmp_path / f"cut.{ext}", make_frames(NUM), gop=10, faststart=True)
    truncate_file(path, keep)
    frames = load_video(path, num_frames=8)
    assert 0 < frames.total_frames < NUM
    drawn = recovered(frames)
    assert drawn == sorted(drawn) and max(drawn) < NUM
    # The returned frames are real ones, reported at their true times.
    np.testing.assert_allclose(frames.timestamps, np.array(drawn) / FPS, atol=1e-6)
    assert frames.indices == sorted(frames.indices) and max(frames.indices) < frames.total_frames


# ----------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("ext", ["mp4", "webm"])
@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, ext, rotation):
    source = make_frames(6, 32, 64)  # not square, so a quarter turn shows in the shape
    path = write_video(tmp_path / f"rot.{ext}", source, rotation=rotation)
    frames = load_video(path, num_frames=3)
    upright = np.rot90(source[frames.indices], k=rotation // 90, axes=(1, 2))
    assert close(frames.array, upright)
    info = probe_video(path)
    assert info["rotation"] == (rotation if rotation != -180 else 180)
    assert (info["height"], info["width"]) == frames.array.shape[1:3]


def test_iphone_portrait_matrix_turns_clockwise(tmp_path):
    """A QuickTime tkhd matrix (a, b, c, d) = (0, 1, -1, 0), as iPhones write for
    portrait video, means "show rotated 90 degrees clockwise" (ISO/IEC 14496-12)."""
    source = make_frames(4, 32, 64)
    path = write_video(tmp_path / "portrait.mp4", source)
    data = bytearray(open(path, "rb").read())
    box = data.find(b"tkhd")
    matrix_at = box + 4 + (40 if data[box + 4] == 0 else 52)  # version 0 / 1 layout
    assert struct.unpack(">9i", data[matrix_at:matrix_at + 36])[:5] == (65536, 0, 0, 0, 65536)
    data[matrix_at:matrix_at + 36] = struct.pack(
        ">9i", 0, 65536, 0, -65536, 0, 0, 32 * 65536, 0, 1 << 30
    )
    open(path, "wb").write(bytes(data))
    with av.open(path) as container:
        assert next(container.decode(video=0)).rotation == -90  # PyAV's sign convention
    frames = load_video(path, num_frames=4)
    assert close(frames.array, np.rot90(source, k=-1, axes=(1, 2)))  # clockwise


def test_mirrored_display_matrix(tmp_path):
    source = make_frames(4, 32, 64)
    path = write_video(tmp_path / "mirror.mp4", source, hflip=True)
    frames = load_video(path, num_frames=4)
    assert close(frames.array, source[:, :, ::-1])  # left-right, not upside down
    assert probe_video(path)["mirrored"] is True


def test_apply_rotation_matches_rot90_and_is_contiguous():
    array = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    for degrees in (0, 90, -90, 180, -180, 270):
        out = apply_rotation(array, degrees)
        assert np.array_equal(out, np.rot90(array, k=degrees // 90, axes=(1, 2)))
        assert out.flags["C_CONTIGUOUS"]


# ------------------------------------------------------------------------------- probe


def test_probe_video(clips):
    info = probe_video(clips["mp4"])
    assert info == {
        "total_frames": NUM,
        "fps": pytest.approx(FPS),
        "duration": pytest.approx(NUM / FPS, abs=0.01),
        "codec": "h264",
        "width": 64,
        "height": 64,
        "rotation": 0,
        "mirrored": False,
    }
    assert probe_video(clips["webm"])["total_frames"] == NUM  # counted from packets
    assert probe_video(clips["webm"])["codec"] == "vp9"


# ------------------------------------------------------------------------------ images


def test_png_rgb_exact(tmp_path):
    pixels = make_frames(1, 24, 40)[0]
    frames = load_visual(write_image(tmp_path / "a.png", pixels))
    assert frames.is_image and frames.array.shape == (1, 24, 40, 3)
    assert np.array_equal(frames.array[0], pixels)
    assert (frames.indices, frames.timestamps, frames.total_frames) == ([0], [0.0], 1)
    assert frames.fps is None and frames.duration is None


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_rgba_drops_alpha(tmp_path, ext):
    rgba = np.zeros((16, 16, 4), np.uint8)
    # Alpha from 15 to 255: a fully transparent pixel may lose its colour in webp.
    rgba[..., 0], rgba[..., 3] = 200, np.arange(16, dtype=np.uint8)[None] * 16 + 15
    frames = load_image(write_image(tmp_path / f"a{ext}", rgba))
    assert frames.array.shape == (1, 16, 16, 3)
    assert np.array_equal(frames.array[0], rgba[..., :3])


def test_greyscale_and_palette_become_rgb(tmp_path):
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))  # (8, 16)
    frames = load_visual(write_image(tmp_path / "grey.png", grey))
    assert np.array_equal(frames.array[0], np.repeat(grey[..., None], 3, axis=2))

    palette = Image.fromarray(make_frames(1, 16, 16)[0]).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    assert load_visual(tmp_path / "palette.png").array.shape == (1, 16, 16, 3)

    wide = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257)  # 16-bit grey
    Image.fromarray(wide).save(tmp_path / "wide.png")
    loaded = load_image(tmp_path / "wide.png").array[0, ..., 0]
    assert np.abs(loaded.astype(int) - wide // 257).max() <= 1


def test_jpeg_loads(tmp_path):
    pixels = make_frames(1, 32, 48, seed=3)[0]
    for name in ("a.jpg", "b.JPEG"):
        frames = load_visual(write_image(tmp_path / name, pixels))
        assert close(frames.array[0], pixels) and frame_index_of(frames.array[0]) == 0


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path, ext):
    pixels = make_frames(1, 16, 32)[0]
    pixels[:8, :8] = 255  # a bright top-left corner to follow
    # Orientation 6: stored image must be turned 90 degrees clockwise to display.
    frames = load_image(write_image(tmp_path / f"o{ext}", pixels, exif_orientation=6))
    assert close(frames.array[0], np.rot90(pixels, k=-1))


def test_supported_extension_lists():
    assert VIDEO_EXTENSIONS == (".mp4", ".mkv", ".webm", ".avi", ".mov", ".gif")
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".webp")


# -------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    for load in (load_visual, load_video, load_image, probe_video):
        with pytest.raises(MediaError, match="no such file") as error:
            load(path)
        assert_one_line_naming(error, path)


def test_directory(tmp_path):
    path = tmp_path / "folder.mp4"
    path.mkdir()
    with pytest.raises(MediaError, match="directory") as error:
        load_visual(path)
    assert_one_line_naming(error, path)


def test_read_error_is_media_error(clips, monkeypatch):
    from aurora.media import _checks

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_checks, "open", denied, raising=False)
    with pytest.raises(MediaError, match="Permission denied; check the file's perm") as error:
        load_visual(clips["mp4"])
    assert_one_line_naming(error, clips["mp4"])


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="empty") as error:
        load_visual(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize("name", ["notes.mp4", "notes.webm", "notes.gif"])
def test_text_file_with_video_extension(tmp_path, name):
    path = write_text_file(tmp_path / name)
    for load in (load_visual, probe_video):
        with pytest.raises(MediaError, match="not a video file or it is corrupt") as error:
            load(path)
        assert_one_line_naming(error, path)
        assert not isinstance(error.value, av.error.FFmpegError)
        assert isinstance(error.value.__cause__, av.error.FFmpegError)


def test_text_file_with_image_extension(tmp_path):
    path = write_text_file(tmp_path / "notes.png")
    with pytest.raises(MediaError, match="not an image file") as error:
        load_visual(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize("name", ["audio.mp4", "audio.m4a", "audio.webm"])
def test_audio_only_file(tmp_path, name):
    path = write_audio_only(tmp_path / name)
    for load in (load_visual, load_video, probe_video):
        with pytest.raises(MediaError, match="no video stream") as error:
            load(path)
        assert_one_line_naming(error, path)


def test_cut_before_index_cannot_open(tmp_path):
    path = write_video(tmp_path / "cut.mp4", make_frames(NUM))  # index (moov) at the end
    truncate_file(path, 0.5)
    with pytest.raises(MediaError) as error:
        load_visual(path)
    assert_one_line_naming(error, path)


def test_no_decodable_frames(tmp_path):
    path = write_video(tmp_path / "zeros.mp4", make_frames(NUM), faststart=True)
    data = bytearray(open(path, "rb").read())
    payload = data.find(b"mdat") + 4
    data[payload:] = bytes(len(data) - payload)  # keep the index, zero every frame
    open(path, "wb").write(bytes(data))
    with pytest.raises(MediaError, match="no video frame could be decoded") as error:
        load_visual(path)
    assert_one_line_naming(error, path)


def test_unsupported_extension_lists_supported(tmp_path):
    path = write_text_file(tmp_path / "notes.txt")
    with pytest.raises(MediaError, match="unsupported extension") as error:
        load_visual(path)
    assert_one_line_naming(error, path)
    assert all(ext in str(error.value) for ext in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)


@pytest.mark.parametrize(
    "options",
    [
        {"num_frames": 0},
        {"num_frames": -3},
        {"num_frames": 2.5},
        {"num_frames": None},
        {"fps": 0},
        {"fps": -1.0},
        {"fps": float("inf")},
        {"fps": float("nan")},
        {"sampling": "random"},
    ],
)
def test_bad_options_raise_config_error(clips, options):
    for load in (load_visual, load_video):
        with pytest.raises(ConfigError) as error:
            load(clips["mp4"], **options)
        assert isinstance(error.value, AuroraError) and "\n" not in str(error.value)


def test_choose_names_frames_by_count_and_rate(tmp_path):
    """A protocol's own rule (e.g. MVBench's time windows) picks frames from (count, fps)."""
    path = write_video(tmp_path / "c.mp4", make_frames(20), fps=10)
    seen = {}

    def choose(total, fps):
        seen.update(total=total, fps=fps)
        return [5, 7, 99, -3]  # out-of-range picks are clamped to the clip

    frames = load_video(path, choose=choose)
    assert seen == {"total": 20, "fps": 10.0}
    assert frames.indices == [5, 7, 19, 0]
    assert [frame_index_of(f) for f in frames.array] == [5, 7, 19, 0]
