"""Reference captions of a synthetic scene, in one canonical phrasing, and the prompt for each.

Five kinds, after the VDC benchmark's aspects: camera, background, main_object, short, detailed.
The grammar (the model learns to produce it; the scorer also accepts paraphrases):

    camera      "The camera is static." | "The camera pans left|right." | "The camera tilts up|down."
                | "The camera zooms in|out."
    background  "The background is solid C." | "The background is a gradient from C1 to C2."
                | "The background has C1 and C2 stripes." | "The background is a|an C1 and C2 checkerboard."
                | "The background is C1 with C2 dots."
    count       "There is one object." | "There are two|three objects."
    object      "A SIZE COLOUR KIND MOTION." | "A SIZE COLOUR KIND appears midway and MOTION."
                | "A SIZE COLOUR KIND MOTION and turns C midway."
                MOTION: moves left|right|up|down, stays still, rotates, grows, shrinks
    long split  "A SIZE COLOUR KIND appears WHEN and MOTION." | "A SIZE COLOUR KIND MOTION and disappears WHEN."
                | "A SIZE COLOUR KIND MOTION and turns C WHEN." | "A SIZE COLOUR KIND MOTION and stops WHEN."
                WHEN: early, midway, late (a quarter, half, three quarters through the clip)
    main_object count + one object sentence per object, left to right
    detailed    camera + background + main_object
    short       one sentence: the objects (size, colour, kind), the background and the camera.
"""

from __future__ import annotations

from aurora.synth.scene import Background, Scene, SceneObject

CAPTION_PROMPTS = {
    "camera": "Describe the camera motion in the video.",
    "background": "Describe the background of the video.",
    "main_object": "Describe the main objects in the video.",
    "short": "Describe the video in one sentence.",
    "detailed": "Describe the video in detail.",
}

CAMERA_SENTENCES = {
    "static": "The camera is static.",
    "pan_left": "The camera pans left.",
    "pan_right": "The camera pans right.",
    "tilt_up": "The camera tilts up.",
    "tilt_down": "The camera tilts down.",
    "zoom_in": "The camera zooms in.",
    "zoom_out": "The camera zooms out.",
}
MOTION_PHRASES = {
    "left": "moves left",
    "right": "moves right",
    "up": "moves up",
    "down": "moves down",
    "static": "stays still",
    "rotate": "rotates",
    "grow": "grows",
    "shrink": "shrinks",
}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}


def captions(scene: Scene) -> dict[str, str]:
    """The five reference captions of `scene`, keyed camera, background, main_object, short, detailed."""
    camera = CAMERA_SENTENCES[scene.camera]
    background = _background_sentence(scene.background)
    main_object = " ".join([_count_sentence(len(scene.objects))] + [_object_sentence(o) for o in scene.objects])
    return {
        "camera": camera,
        "background": background,
        "main_object": main_object,
        "short": _short(scene),
        "detailed": f"{camera} {background} {main_object}",
    }


def _background_sentence(bg: Background) -> str:
    if bg.type == "solid":
        return f"The background is solid {bg.colours[0]}."
    a, b = bg.colours
    if bg.type == "gradient":
        return f"The background is a gradient from {a} to {b}."
    return {
        "stripes": f"The background has {a} and {b} stripes.",
        "checkerboard": f"The background is {_a(a)} and {b} checkerboard.",
        "dots": f"The background is {a} with {b} dots.",
    }[bg.pattern]


def _count_sentence(count: int) -> str:
    return "There is one object." if count == 1 else f"There are {NUMBER_WORDS[count]} objects."


def _object_sentence(obj: SceneObject) -> str:
    noun = f"A {obj.size} {obj.colour} {obj.kind}"
    motion = MOTION_PHRASES[obj.motion]
    when = obj.at or "midway"
    if obj.event == "appears":
        return f"{noun} appears {when} and {motion}."
    if obj.event == "changes_colour":
        return f"{noun} {motion} and turns {obj.new_colour} {when}."
    if obj.event in ("disappears", "stops"):
        return f"{noun} {motion} and {obj.event} {when}."
    return f"{noun} {motion}."


def _short(scene: Scene) -> str:
    nouns = [f"a {o.size} {o.colour} {o.kind}" for o in scene.objects]
    listed = nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]
    bg = scene.background
    if bg.type == "solid":
        backdrop = f"a solid {bg.colours[0]} background"
    elif bg.type == "gradient":
        backdrop = f"{_a(bg.colours[0])} to {bg.colours[1]} gradient background"
    elif bg.pattern == "dots":
        backdrop = f"{_a(bg.colours[0])} background with {bg.colours[1]} dots"
    else:
        adjective = {"stripes": "striped", "checkerboard": "checkerboard"}[bg.pattern]
        backdrop = f"{_a(bg.colours[0])} and {bg.colours[1]} {adjective} background"
    if scene.camera == "static":
        shot = "with a static camera"
    else:
        shot = "as the " + CAMERA_SENTENCES[scene.camera][len("The "):-1]
    return f"{listed[0].upper()}{listed[1:]} on {backdrop} {shot}."


def _a(word: str) -> str:
    """`word` with its indefinite article ("an orange", "a red")."""
    return ("an " if word[0] in "aeiou" else "a ") + word
