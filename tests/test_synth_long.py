"""The long synthetic split: events at known times in the pixels and the captions, the scorer's
reading of when and in what order, and the speed/quality sweep over reducers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aurora.errors import ConfigError
from aurora.eval.synth_score import LONG_ASPECTS, extract, ground_truth, score
from aurora.synth import Background, Scene, SceneObject, SynthConfig, captions, generate, render, sample_scene, track
from aurora.synth.vocab import rgb

LONG = SynthConfig(size=64, frames=32, long=True)


def _scene(*objects):
    return Scene("static", Background("solid", ("black",)), tuple(objects), long=True)


def _shows(frame, colour):
    return int((np.abs(frame.astype(int) - rgb(colour)).sum(-1) < 60).sum())


def test_events_happen_in_the_pixels_at_their_stated_times():
    gone = SceneObject("circle", "red", "large", "static", event="disappears", at="early", x=0.25, y=0.3)
    recolour = SceneObject("square", "blue", "large", "static", event="changes_colour", new_colour="green",
                           at="late", x=0.75, y=0.3)
    late = SceneObject("star", "yellow", "large", "static", event="appears", at="midway", x=0.5, y=0.75)
    frames = render(_scene(gone, recolour, late), LONG)  # 32 frames: early 8, midway 16, late 24
    assert [_shows(f, "red") > 50 for f in frames] == [True] * 8 + [False] * 24
    assert [_shows(f, "green") > 50 for f in frames] == [False] * 24 + [True] * 8
    assert [_shows(f, "yellow") > 30 for f in frames] == [False] * 16 + [True] * 16
    stopping = track(SceneObject("circle", "red", "small", "right", event="stops", at="midway", x=0.3), 32)
    assert np.all(np.diff(stopping.x[:16]) > 0) and np.all(stopping.x[15:] == stopping.x[15])
    assert stopping.x[15] == pytest.approx(0.3 + 0.3)  # the whole move, done by the event


def test_long_scenes_keep_their_promises_and_read_back_exactly():
    kinds = set()
    for index in range(40):
        scene = sample_scene(np.random.default_rng([7, index]), LONG)
        assert scene.long and scene.camera in ("static", "pan_left", "pan_right", "tilt_up", "tilt_down")
        assert any(track(o, 32).visible[0] for o in scene.objects)  # someone is there from the start
        for o in scene.objects:
            assert (o.at is None) == (o.event is None) and not (o.event == "stops" and o.motion == "static")
            kinds.add(o.event)
        text = captions(scene)["detailed"]
        assert extract(text)["objects"] == ground_truth(scene.to_dict())["objects"], text
        result = score(json.loads(json.dumps(scene.to_dict())), text)
        assert result["overall"] == 1.0 and result["event_time"] == 1.0 and result["event_order"] in (1.0, None)
    assert kinds == {None, "appears", "disappears", "changes_colour", "stops"}


def test_when_and_in_what_order_are_scored():
    scene = _scene(SceneObject("circle", "red", "small", "left", event="disappears", at="early", x=0.3, y=0.3),
                   SceneObject("square", "blue", "large", "up", event="stops", at="late", x=0.7, y=0.7))
    truth = scene.to_dict()
    right = captions(scene)["detailed"]
    assert right.endswith("A small red circle moves left and disappears early. "
                          "A large blue square moves up and stops late.")
    swapped = right.replace("disappears early", "disappears late").replace("stops late", "stops early")
    result = score(truth, swapped)
    assert result["object_event"] == 1.0 and result["event_time"] == 0.0 and result["event_order"] == 0.0
    vague = score(truth, right.replace(" early", "").replace(" late", ""))
    assert vague["event_time"] == 0.0 and vague["event_order"] == 0.0
    paraphrase = ("The camera is static. The background is solid black. There are two objects. A small red circle "
                  "moves left and vanishes at the beginning. A big blue square moves up and comes to a stop near the end.")
    assert score(truth, paraphrase)["overall"] == 1.0
    short = score({k: v for k, v in truth.items() if k != "long"}, right)  # a short clip has no timeline aspects
    assert not set(LONG_ASPECTS) & set(short)


def test_long_config_and_a_short_split_reads_as_before(tmp_path):
    with pytest.raises(ConfigError, match="32-64 frames"):
        SynthConfig(frames=16, long=True)
    assert "long" not in SynthConfig().to_dict() and SynthConfig(frames=32, long=True).to_dict()["long"] is True
    short = sample_scene(np.random.default_rng([1, 2]), SynthConfig(frames=8)).to_dict()
    assert "long" not in short and all("at" not in o for o in short["objects"])
    from aurora.cli import main

    assert main(["synth", "--long", "--out", str(tmp_path / "long"), "--num-clips", "2", "--workers", "1"]) == 0
    record = json.loads((tmp_path / "long" / "train.jsonl").read_text().splitlines()[0])
    assert record["attributes"]["long"] is True
    assert json.loads((tmp_path / "long" / "synth_config.json").read_text())["frames"] == 32


def test_the_sweep_writes_the_curve_and_resumes(xtuner_ckpt, tmp_path):
    import aurora
    from aurora.eval.synth_curve import sweep

    generate(SynthConfig(num_clips=1, size=64, frames=32, seed=5, splits=(0, 0, 1), long=True,
                         out=str(tmp_path / "data")), progress=False)
    model = aurora.load(xtuner_ckpt)
    kwargs = dict(shares=(0.5,), max_new_tokens=2, num_frames=4, ttft_frames=4, ttft_clips=1, ttft_repeats=1,
                  progress=False)
    curve = sweep(model, tmp_path / "data" / "test.jsonl", tmp_path / "out", **kwargs)
    assert set(curve["reductions"]) == {"tome", "temporal", "both", "reuse"} and model.preset.reducer.method == "tome"
    for reduction, points in curve["reductions"].items():
        assert set(points) == {"1", "0.5"} and points["1"]["token_share"] == 1.0
        assert points["1"]["overall"] == curve["full"]["overall"]  # 100% is run once, under the first reducer
        assert points["0.5"]["speedup"] > 0 and "event_time" in points["0.5"]["aspects"]
        assert points["1"]["relative_se"] is None and points["0.5"]["relative_se"] is None  # one clip: no error
    assert curve["reductions"]["temporal"]["0.5"]["token_share"] == 0.5  # merged across time: exactly the share
    assert curve["reductions"]["reuse"]["0.5"]["token_share"] == 0.5  # the changed half reaches the LM
    assert curve["reductions"]["tome"]["0.5"]["token_share"] > 0.5  # ToMe's per-layer rule keeps a little more
    assert "| temporal | 50% | 50.0%" in (tmp_path / "out" / "curve.md").read_text()
    assert (tmp_path / "out" / "curve.png").stat().st_size > 0
    before = {p: p.read_text() for p in (tmp_path / "out").rglob("*.jsonl")}
    sweep(model, tmp_path / "data" / "test.jsonl", tmp_path / "out", **kwargs)  # resumes: nothing is redone
    assert {p: p.read_text() for p in (tmp_path / "out").rglob("*.jsonl")} == before


def test_paired_error_of_the_relative_accuracy(tmp_path):
    from aurora.eval.synth_curve import paired_relative_error

    def write(name, scores):
        path = tmp_path / name
        path.write_text("".join(json.dumps({"id": i, "scores": {"overall": s}}) + "\n" for i, s in scores.items()))
        return path

    full = write("full.jsonl", {"a": 1.0, "b": 0.5, "c": 0.5, "d": 1.0, "only_full": 0.0})
    reduced = write("reduced.jsonl", {"a": 0.5, "b": 0.5, "c": 0.0, "d": 1.0, "only_reduced": 1.0})
    # per-clip differences -0.5, 0, -0.5, 0 over the four shared clips: sd 0.2887, / sqrt(4), / mean 0.75
    assert paired_relative_error(full, reduced) == pytest.approx((1 / 12) ** 0.5 / 2 / 0.75)
    assert paired_relative_error(full, full) == 0.0  # the same clips scored alike: no spread
    assert paired_relative_error(write("one.jsonl", {"a": 1.0}), reduced) is None  # one shared clip
