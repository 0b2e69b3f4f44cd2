"""Tests for aurora.synth: config checks, determinism, records, splits, resume, and that the
rendered pixels show exactly what the ground truth says (camera, motion, events, colours).

Datasets here are tiny (6-10 clips of 8 frames at 64 px); pixel tests work on the raw rendered
arrays, except one that checks decoded colours survive the mp4 encoding.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from aurora.errors import ConfigError
from aurora.media import load_video
from aurora.synth import (
    CAPTION_PROMPTS,
    Background,
    Scene,
    SceneObject,
    SynthConfig,
    captions,
    generate,
    render,
    sample_scene,
    scene_for,
    track,
)
from aurora.synth.render import PAN, ZOOM
from aurora.synth.scene import DIAMETER, MOVE, RADIUS, object_colours
from aurora.synth.dataset import video_path
from aurora.synth.vocab import COLOURS, CONTRASTING, SYMMETRY, rgb

TINY = dict(size=64, frames=8, fps=8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 clips (8 train, 1 val, 1 test) written once for the read-only tests."""
    config = SynthConfig(num_clips=10, seed=3, out=str(tmp_path_factory.mktemp("synth") / "data"), **TINY)
    return config, generate(config, progress=False)


def _lines(config: SynthConfig, split: str) -> list[str]:
    with open(f"{config.out}/{split}.jsonl", encoding="utf-8") as handle:
        return handle.readlines()


def _jsonl_bytes(config: SynthConfig) -> bytes:
    return b"".join(open(f"{config.out}/{s}.jsonl", "rb").read() for s in ("train", "val", "test"))


# ---- config ----


@pytest.mark.parametrize("bad", [
    dict(num_clips=0), dict(size=63), dict(size=16), dict(frames=2), dict(fps=0), dict(seed=-1),
    dict(splits=(0.5, 0.5, 0.5)), dict(splits=(0.9, 0.1)), dict(splits=(1.2, -0.1, -0.1)), dict(num_clips=2.5),
    dict(tasks={}), dict(tasks={"plot": 1.0}), dict(tasks={"camera": 0}), dict(tasks={"camera": float("nan")}),
])
def test_bad_config_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="invalid synth config"):
        SynthConfig(**bad)


def test_bad_workers_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="workers"):
        generate(SynthConfig(num_clips=1, out=str(tmp_path), **TINY), workers=0, progress=False)


# ---- files and records ----


def test_counts_splits_and_files(dataset):
    config, counts = dataset
    assert counts == {"train": 8, "val": 1, "test": 1, "written": 10, "skipped": 0}
    ids = {s: [json.loads(line)["id"] for line in _lines(config, s)] for s in ("train", "val", "test")}
    assert ids == {"train": [f"train_{i:05d}" for i in range(8)], "val": ["val_00008"], "test": ["test_00009"]}
    for split in ("train", "val", "test"):
        for line in _lines(config, split):
            record = json.loads(line)
            frames = load_video(f"{config.out}/{record['video']}", num_frames=8)
            assert frames.array.shape == (8, 64, 64, 3)


def test_record_schema(dataset):
    config, _ = dataset
    record = json.loads(_lines(config, "test")[0])
    assert list(record) == ["id", "split", "video", "attributes", "captions", "conversations"]
    assert (record["id"], record["split"], record["video"]) == ("test_00009", "test", "test/00009.mp4")
    assert set(record["captions"]) == set(CAPTION_PROMPTS)
    assert set(CAPTION_PROMPTS) == {"camera", "background", "main_object", "short", "detailed"}
    assert record["conversations"] == [
        {"from": "human", "value": "<video>\nDescribe the video in detail."},
        {"from": "gpt", "value": record["captions"]["detailed"]},
    ]
    scene = scene_for(9, config)
    assert Scene.from_dict(record["attributes"]) == scene
    assert record["captions"] == captions(scene)
    assert set(record["attributes"]) == {"camera", "background", "objects"}
    assert set(record["attributes"]["objects"][0]) >= {"kind", "colour", "size", "motion", "event", "new_colour"}


def test_same_seed_same_bytes_and_frames_even_with_workers(dataset, tmp_path):
    config, _ = dataset
    again = replace(config, out=str(tmp_path / "again"))
    generate(again, workers=2, progress=False)
    assert _jsonl_bytes(again) == _jsonl_bytes(config)
    for video in ("train/00000.mp4", "train/00005.mp4", "test/00009.mp4"):
        assert open(f"{again.out}/{video}", "rb").read() == open(f"{config.out}/{video}", "rb").read()
        first = load_video(f"{config.out}/{video}", num_frames=8).array
        second = load_video(f"{again.out}/{video}", num_frames=8).array
        np.testing.assert_array_equal(first, second)


def test_different_seed_differs(dataset, tmp_path):
    config, _ = dataset
    other = replace(config, seed=4, out=str(tmp_path / "other"), num_clips=3)
    generate(other, progress=False)
    mine = [json.loads(line)["attributes"] for line in _lines(config, "train")[:2]]
    theirs = [json.loads(line)["attributes"] for line in _lines(other, "train")[:2]]
    assert mine != theirs
    first = load_video(f"{config.out}/train/00000.mp4", num_frames=8).array
    second = load_video(f"{other.out}/train/00000.mp4", num_frames=8).array
    assert not np.array_equal(first, second)


def test_resume_rewrites_only_missing_clips(tmp_path):
    config = SynthConfig(num_clips=6, seed=1, out=str(tmp_path / "data"), **TINY)
    generate(config, progress=False)
    jsonl = _jsonl_bytes(config)
    kept = open(f"{config.out}/train/00001.mp4", "rb").read()
    removed = open(f"{config.out}/train/00002.mp4", "rb").read()
    (tmp_path / "data" / "train" / "00002.mp4").unlink()
    (tmp_path / "data" / "train.jsonl").unlink()
    counts = generate(config, progress=False)
    assert (counts["written"], counts["skipped"]) == (1, 5)
    assert _jsonl_bytes(config) == jsonl
    assert open(f"{config.out}/train/00001.mp4", "rb").read() == kept
    assert open(f"{config.out}/train/00002.mp4", "rb").read() == removed
    assert not list((tmp_path / "data").rglob("*.part"))


def test_folder_of_other_settings_is_refused(tmp_path):
    config = SynthConfig(num_clips=2, seed=1, out=str(tmp_path / "data"), **TINY)
    generate(config, progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        generate(replace(config, seed=2), progress=False)
    shutil.rmtree(tmp_path / "data")
    generate(replace(config, seed=2), progress=False)  # a fresh folder is fine


def test_task_mix_changes_only_the_conversations_and_reuses_the_clips(tmp_path):
    from aurora.synth.config import parse_tasks

    config = SynthConfig(num_clips=40, seed=1, splits=(1, 0, 0), out=str(tmp_path / "data"), **TINY)
    generate(config, progress=False)
    clip = open(f"{config.out}/train/00003.mp4", "rb").read()
    mixed = replace(config, tasks=parse_tasks("detailed=2,camera,main_object=1"))
    counts = generate(mixed, progress=False)
    assert counts["written"] == 0  # same clips: only the JSONL is rewritten
    assert open(f"{config.out}/train/00003.mp4", "rb").read() == clip
    records = [json.loads(line) for line in _lines(mixed, "train")]
    asked = {}
    for r in records:
        (human, gpt) = r["conversations"]
        task = next(t for t, prompt in CAPTION_PROMPTS.items() if human["value"] == "<video>\n" + prompt)
        assert gpt["value"] == r["captions"][task]
        asked[task] = asked.get(task, 0) + 1
    assert set(asked) == {"detailed", "camera", "main_object"} and asked["detailed"] > 10
    generate(mixed, progress=False)
    assert [json.loads(line) for line in _lines(mixed, "train")] == records  # deterministic
    assert parse_tasks("camera") == {"camera": 1.0}
    with pytest.raises(ConfigError, match="NAME=WEIGHT"):
        parse_tasks("camera=lots")


def test_decoded_colours_match_ground_truth(dataset):
    """The mp4 keeps each object's palette colour at its centre (first and last frame)."""
    config, _ = dataset
    for index in range(config.num_clips):
        scene = scene_for(index, config)
        video = load_video(f"{config.out}/{video_path(index, config)}", num_frames=8).array
        for obj in scene.objects:
            tr = track(obj, config.frames)
            for t in (0, config.frames - 1):
                if not tr.visible[t]:
                    continue
                x, y = int(tr.x[t] * 64), int(tr.y[t] * 64)
                seen = video[t, y - 1:y + 1, x - 1:x + 1].reshape(-1, 3).mean(0)
                assert np.linalg.norm(seen - rgb(tr.colour[t])) < 40, (index, obj, t, seen)


# ---- what the sampler promises ----


def test_sampled_scenes_keep_their_promises():
    config = SynthConfig(**TINY)
    for index in range(300):
        scene = sample_scene(np.random.default_rng([5, index]), config)
        assert 1 <= len(scene.objects) <= 3
        assert any(o.event != "appears" for o in scene.objects)
        assert tuple(scene.background.colours) in {(c,) for c in COLOURS} | CONTRASTING
        tracks = [track(o, config.frames) for o in scene.objects]
        first_x = [float(t.x[np.argmax(t.visible)]) for t in tracks]
        assert first_x == sorted(first_x)  # listed left to right
        for obj, tr in zip(scene.objects, tracks):
            assert obj.colour in object_colours(scene.background)
            assert not (obj.motion == "rotate" and SYMMETRY[obj.kind] == 0)
            assert (obj.event == "changes_colour") == (obj.new_colour is not None)
            assert obj.new_colour != obj.colour
            reach = RADIUS * tr.diameter
            assert np.all(tr.x - reach >= 0) and np.all(tr.x + reach <= 1)
            assert np.all(tr.y - reach >= 0) and np.all(tr.y + reach <= 1)
            assert tr.diameter.min() * 64 >= 12  # small still >= ~12 px at 64 px
        for a in range(len(tracks)):
            for b in range(a + 1, len(tracks)):
                both = tracks[a].visible & tracks[b].visible
                gap = np.hypot(tracks[a].x - tracks[b].x, tracks[a].y - tracks[b].y)
                assert np.all(gap[both] >= RADIUS * (tracks[a].diameter + tracks[b].diameter)[both])


def test_scene_round_trips_through_json():
    scene = sample_scene(np.random.default_rng(0), SynthConfig(**TINY))
    assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


# ---- pixels ----


def _scene(camera="static", background=None, objects=()):
    return Scene(camera, background or Background("solid", ("grey",), speckle_seed=7), tuple(objects))


def _shifted(a: np.ndarray, dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping parts of frame `a` moved by (dx, dy) and of the frame it should match."""
    h, w = a.shape[:2]
    src = a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return src, (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))


BACKGROUNDS = [
    Background("solid", ("grey",), speckle_seed=7),
    Background("gradient", ("blue", "white"), orientation=45, speckle_seed=8),
    Background("texture", ("red", "white"), "stripes", orientation=0, speckle_seed=9),
    Background("texture", ("black", "yellow"), "checkerboard", speckle_seed=10),
]


@pytest.mark.parametrize("background", BACKGROUNDS, ids=lambda b: b.pattern or b.type)
@pytest.mark.parametrize("camera, dx, dy", [
    ("pan_left", 1, 0), ("pan_right", -1, 0), ("tilt_up", 0, 1), ("tilt_down", 0, -1), ("static", 0, 0),
])
def test_camera_moves_background_the_stated_way(camera, dx, dy, background):
    """pan_left: content slides right on screen; tilt_up: down. Size 80 makes the shift 24 px exactly."""
    config = SynthConfig(size=80, frames=8)
    frames = render(_scene(camera, background), config).astype(np.float64)
    first, last = frames[0], frames[-1]
    step = round(PAN * 80)  # 24
    moved, where = _shifted(first, dx * step, dy * step)
    assert np.abs(last[where] - moved).mean() < 0.5  # the background moved by exactly that
    for wrong in {(step, 0), (-step, 0), (0, step), (0, -step), (0, 0)} - {(dx * step, dy * step)}:
        moved, where = _shifted(first, *wrong)
        assert np.abs(last[where] - moved).mean() > 3  # ...and not by anything else


def _magnify(frame: np.ndarray) -> np.ndarray:
    """The centre of `frame` enlarged ZOOM times, as the renderer's zoom would show it."""
    size = frame.shape[0]
    half = size / ZOOM / 2
    box = (size / 2 - half, size / 2 - half, size / 2 + half, size / 2 + half)
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR, box=box), dtype=np.float64)


@pytest.mark.parametrize("background", BACKGROUNDS[:2], ids=lambda b: b.type)
def test_zoom_magnifies_or_shrinks_the_background(background):
    config = SynthConfig(size=64, frames=8)
    zoom_in = render(_scene("zoom_in", background), config)
    zoom_out = render(_scene("zoom_out", background), config)
    error = lambda a, b: np.abs(np.asarray(a, dtype=np.float64) - b).mean()
    assert error(zoom_in[-1], _magnify(zoom_in[0])) < 1.5  # last = first magnified
    assert error(zoom_in[-1], zoom_in[0]) > 3 * error(zoom_in[-1], _magnify(zoom_in[0]))
    assert error(zoom_out[0], _magnify(zoom_out[-1])) < 1.5  # first = last magnified
    assert error(zoom_out[0], zoom_out[-1]) > 3 * error(zoom_out[0], _magnify(zoom_out[-1]))


def _mask(frame: np.ndarray, colour: str) -> np.ndarray:
    """(H, W) bool: pixels of (nearly) this palette colour."""
    return np.linalg.norm(frame.astype(np.float64) - rgb(colour), axis=-1) < 40


def _centre(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


@pytest.mark.parametrize("motion, dx, dy", [
    ("left", -1, 0), ("right", 1, 0), ("up", 0, -1), ("down", 0, 1), ("static", 0, 0),
])
@pytest.mark.parametrize("camera", ["static", "pan_right"])
def test_object_moves_on_screen_as_stated(motion, dx, dy, camera):
    """Objects move in screen coordinates, whatever the camera does."""
    obj = SceneObject("square", "red", "large", motion, x=0.5, y=0.5, angle=10)
    frames = render(_scene(camera, objects=[obj]), SynthConfig(**TINY))
    (x0, y0), (x1, y1) = _centre(_mask(frames[0], "red")), _centre(_mask(frames[-1], "red"))
    travel = MOVE * 64  # 19.2 px
    assert x1 - x0 == pytest.approx(dx * travel, abs=1.0)
    assert y1 - y0 == pytest.approx(dy * travel, abs=1.0)


@pytest.mark.parametrize("motion, ratio", [("grow", 1.5**2), ("shrink", 1 / 1.5**2), ("rotate", 1.0), ("static", 1.0)])
def test_grow_shrink_rotate(motion, ratio):
    size = "small" if motion == "grow" else "large"
    obj = SceneObject("star", "yellow", size, motion, x=0.5, y=0.5)
    frames = render(_scene(objects=[obj]), SynthConfig(**TINY))
    first, last = _mask(frames[0], "yellow"), _mask(frames[-1], "yellow")
    assert last.sum() / first.sum() == pytest.approx(ratio, rel=0.15)
    changed = (first != last).sum()
    assert (changed > 20) == (motion != "static")


def test_sizes_are_as_named():
    areas = {}
    for size in ("small", "large"):
        obj = SceneObject("circle", "red", size, "static", x=0.5, y=0.5)
        areas[size] = _mask(render(_scene(objects=[obj]), SynthConfig(**TINY))[0], "red").sum()
    assert areas["small"] == pytest.approx(np.pi * (DIAMETER["small"] * 32) ** 2, rel=0.15)  # ~14 px wide
    assert areas["large"] == pytest.approx(np.pi * (DIAMETER["large"] * 32) ** 2, rel=0.15)


def test_appearing_object_is_absent_then_present():
    obj = SceneObject("cross", "blue", "large", "right", event="appears", x=0.3, y=0.5)
    frames = render(_scene(objects=[obj]), SynthConfig(**TINY))
    visible = [_mask(f, "blue").sum() > 50 for f in frames]
    assert visible == [False] * 4 + [True] * 4  # 8 frames: from the middle frame on


def test_colour_change_is_visible():
    obj = SceneObject("circle", "red", "large", "static", event="changes_colour", new_colour="blue", x=0.5, y=0.5)
    frames = render(_scene(objects=[obj]), SynthConfig(**TINY))
    assert _mask(frames[0], "red").sum() > 200 and _mask(frames[0], "blue").sum() == 0
    assert _mask(frames[-1], "blue").sum() > 200 and _mask(frames[-1], "red").sum() == 0


def test_render_shape_and_determinism():
    config = SynthConfig(**TINY)
    scene = scene_for(0, config)
    frames = render(scene, config)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, render(scene, config))
