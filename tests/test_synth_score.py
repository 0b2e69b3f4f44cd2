"""Tests for aurora.eval.synth_score: reading attributes out of captions and scoring them.

Generated captions must read back exactly; hand-written ones check paraphrases, wrong, partly
right, extra and missing objects, and the empty caption, against concrete scores.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from aurora.errors import ConfigError
from aurora.eval.synth_score import ASPECTS, extract, ground_truth, score, summarise
from aurora.synth import Background, Scene, SceneObject, SynthConfig, captions, sample_scene

# Ground truth for the hand-written captions: a small red circle moving left (listed first) and
# a large green square that rotates and turns yellow midway, on a blue-to-white gradient, while
# the camera pans left.
SCENE = Scene(
    "pan_left",
    Background("gradient", ("blue", "white"), orientation=90),
    (
        SceneObject("circle", "red", "small", "left", x=0.4, y=0.3),
        SceneObject("square", "green", "large", "rotate", event="changes_colour", new_colour="yellow", x=0.7, y=0.7),
    ),
)
TRUTH = json.loads(json.dumps(SCENE.to_dict()))  # as read back from a JSONL record
CANONICAL = captions(SCENE)["detailed"]


def _aspects(result: dict) -> dict:
    return {a: result[a] for a in ASPECTS}


def test_canonical_caption_is_as_documented():
    assert CANONICAL == (
        "The camera pans left. The background is a gradient from blue to white. There are two objects. "
        "A small red circle moves left. A large green square rotates and turns yellow midway."
    )


def test_generated_captions_read_back_exactly_and_score_one():
    config = SynthConfig(size=64, frames=8)
    for index in range(50):
        scene = sample_scene(np.random.default_rng([123, index]), config)
        texts = captions(scene)
        assert extract(texts["detailed"]) == ground_truth(scene.to_dict()), texts["detailed"]
        result = score(scene.to_dict(), texts["detailed"])
        assert _aspects(result) == {a: 1.0 for a in ASPECTS} and result["overall"] == 1.0
        # The single-aspect captions read back their own aspect.
        assert extract(texts["camera"])["camera"] == scene.camera
        assert extract(texts["background"])["background"] == ground_truth(scene.to_dict())["background"]
        assert extract(texts["main_object"])["objects"] == ground_truth(scene.to_dict())["objects"]


def test_paraphrase_scores_one():
    caption = ("The camera pans to the left. The backdrop fades from white to blue. There are 2 shapes: "
               "a little red disc travelling leftward and a big green box that spins and, halfway through, "
               "changes its colour to yellow.")
    result = score(TRUTH, caption)
    assert _aspects(result) == {a: 1.0 for a in ASPECTS}


def test_order_of_objects_does_not_matter():
    caption = ("The camera pans left. The background is a gradient from blue to white. There are two objects. "
               "A large green square rotates and turns yellow midway. A small red circle moves left.")
    assert score(TRUTH, caption)["overall"] == 1.0


def test_wrong_caption():
    caption = ("The camera zooms in. The background is solid black. There are three objects. A blue star "
               "moves up. A white cross grows. A purple triangle shrinks.")
    result = score(TRUTH, caption)
    # Only "no event" agrees, for the circle: one matched pair out of max(2, 3) objects.
    expected = {a: 0.0 for a in ASPECTS} | {"object_event": pytest.approx(1 / 3)}
    assert _aspects(result) == expected
    assert result["overall"] == pytest.approx(1 / 3 / 8)


def test_partly_right_caption():
    caption = "The camera pans left. The background is solid blue. There is one object. A small red circle moves right."
    result = score(TRUTH, caption)
    assert _aspects(result) == {
        "camera": 1.0, "background": 0.0, "count": 0.0,
        "object_kind": 0.5, "object_colour": 0.5, "object_size": 0.5, "object_motion": 0.0, "object_event": 0.5,
    }
    assert result["overall"] == pytest.approx(3 / 8)


def test_extra_object_costs_in_every_object_aspect():
    caption = ("The camera pans left. The background is a gradient from blue to white. There are three objects. "
               "A small red circle moves left. A large green square rotates and turns yellow midway. "
               "A small black star stays still.")
    result = score(TRUTH, caption)
    assert result["count"] == 0.0 and result["camera"] == 1.0 and result["background"] == 1.0
    for aspect in ("object_kind", "object_colour", "object_size", "object_motion", "object_event"):
        assert result[aspect] == pytest.approx(2 / 3)


def test_missing_object_costs_in_every_object_aspect():
    caption = ("The camera pans left. The background is a gradient from blue to white. There is one object. "
               "A small red circle moves left.")
    result = score(TRUTH, caption)
    assert result["count"] == 0.0
    for aspect in ("object_kind", "object_colour", "object_size", "object_motion", "object_event"):
        assert result[aspect] == 0.5


def test_matching_picks_best_agreement_not_order():
    # The square is described first and wrongly sized; it must still be matched with the square.
    caption = "A small green square rotates. A small red circle moves left."
    result = score(TRUTH, caption)
    assert (result["object_kind"], result["object_colour"], result["object_size"]) == (1.0, 1.0, 0.5)
    assert result["object_motion"] == 1.0 and result["object_event"] == 0.5  # the colour change is not mentioned


@pytest.mark.parametrize("caption", ["", "   ", "Nothing to see here."])
def test_empty_caption_scores_zero(caption):
    result = score(TRUTH, caption)
    assert _aspects(result) == {a: 0.0 for a in ASPECTS} and result["overall"] == 0.0
    assert result["extracted"] == {
        "camera": None, "background": {"type": None, "pattern": None, "colours": []}, "count": None, "objects": [],
    }


@pytest.mark.parametrize("caption, camera", [
    ("The camera is still.", "static"),
    ("A static shot of a red circle.", "static"),
    ("There is no camera movement.", "static"),
    ("The camera does not move.", "static"),
    ("The camera pans to the right.", "pan_right"),
    ("It pans slowly to the left as a circle moves up.", "pan_left"),
    ("A leftward pan reveals a square.", "pan_left"),
    ("The camera tilts upward.", "tilt_up"),
    ("The view tilts down.", "tilt_down"),
    ("The camera zooms in on a star.", "zoom_in"),
    ("We see a slow zoom out.", "zoom_out"),
    ("The camera moves to the right.", "pan_right"),
    ("A red circle moves left.", None),
])
def test_camera_paraphrases(caption, camera):
    assert extract(caption)["camera"] == camera


@pytest.mark.parametrize("caption, background", [
    ("A blue backdrop.", ("solid", None, ["blue"])),
    ("The background is plain grey.", ("solid", None, ["grey"])),
    ("On a gray background.", ("solid", None, ["grey"])),
    ("The background is a gradient from blue to orange.", ("gradient", None, ["blue", "orange"])),
    ("on an orange to white gradient background", ("gradient", None, ["orange", "white"])),
    ("The backdrop fades from black to white.", ("gradient", None, ["black", "white"])),
    ("The background has red and white stripes.", ("texture", "stripes", ["red", "white"])),
    ("a black-and-yellow striped background", ("texture", "stripes", ["black", "yellow"])),
    ("The background is a green and purple checkerboard.", ("texture", "checkerboard", ["green", "purple"])),
    ("The background is checkered black and white.", ("texture", "checkerboard", ["black", "white"])),
    ("The background is white with red polka dots.", ("texture", "dots", ["white", "red"])),
    ("A textured background.", ("texture", None, [])),
])
def test_background_paraphrases(caption, background):
    read = extract(caption)["background"]
    assert (read["type"], read["pattern"], read["colours"]) == background


@pytest.mark.parametrize("caption, count", [
    ("There are two objects.", 2),
    ("There are 3 shapes: a red circle, a blue star and a green cross.", 3),
    ("There is one object. A red circle moves left.", 1),
    ("A pair of red squares moves down.", 2),
    ("Two blue circles and a yellow star.", 3),
    ("A red circle and a blue square.", 2),
])
def test_count_paraphrases(caption, count):
    assert extract(caption)["count"] == count


def _objects(caption: str) -> list[tuple]:
    fields = ("size", "colour", "kind", "motion", "event", "new_colour")
    return [tuple(o[f] for f in fields) for o in extract(caption)["objects"]]


@pytest.mark.parametrize("caption, objects", [
    ("A red circle moving to the left.", [(None, "red", "circle", "left", None, None)]),
    ("A big green square travels left.", [("large", "green", "square", "left", None, None)]),
    ("A tiny yellow star spins in place.", [("small", "yellow", "star", "rotate", None, None)]),
    ("A small red circle on the left moves up.", [("small", "red", "circle", "up", None, None)]),
    ("A blue circle crosses the frame from left to right.", [(None, "blue", "circle", "right", None, None)]),
    ("A large black star-shaped object grows bigger.", [("large", "black", "star", "grow", None, None)]),
    ("A small white plus sign gets smaller.", [("small", "white", "cross", "shrink", None, None)]),
    ("A large orange box does not move.", [("large", "orange", "square", "static", None, None)]),
    ("Midway, a green triangle shows up and falls.", [(None, "green", "triangle", "down", "appears", None)]),
    ("A purple disc rises and turns from purple to white.",
     [(None, "purple", "circle", "up", "changes_colour", "white")]),
    ("A blue square. The square is moving right. It changes colour to red midway.",
     [(None, "blue", "square", "right", "changes_colour", "red")]),
    ("Red and blue squares slide to the left.",
     [(None, "red", "square", "left", None, None), (None, "blue", "square", "left", None, None)]),
    ("Two small white circles stay still.",
     [("small", "white", "circle", "static", None, None)] * 2),
    ("A green large triangle rotates clockwise.", [("large", "green", "triangle", "rotate", None, None)]),
])
def test_object_paraphrases(caption, objects):
    assert _objects(caption) == objects


def test_summarise_means_each_aspect():
    perfect = score(TRUTH, CANONICAL)
    empty = score(TRUTH, "")
    summary = summarise([perfect, empty])
    assert summary == {**{a: 0.5 for a in ASPECTS}, "overall": 0.5, "n": 2}
    with pytest.raises(ConfigError):
        summarise([])


def test_ground_truth_needs_attributes():
    assert ground_truth(TRUTH)["count"] == 2
    with pytest.raises(ConfigError, match="attributes"):
        score({"captions": {}}, CANONICAL)
