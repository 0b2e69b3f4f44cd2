"""The words of the synthetic world: every value a scene attribute can take.

The generator samples from these tuples, the captions spell them as written here (canonical
phrasing), and the scorer (`aurora.eval.synth_score`) maps free text back onto them. Colours
carry their RGB so renderer and contrast rule share one table.
"""

from __future__ import annotations

import itertools

import numpy as np

# Camera motion. The camera moves only the background: pan_left turns the view to the left, so
# the background slides RIGHT on screen; tilt_up slides it DOWN; zoom_in magnifies it.
CAMERAS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out")

BACKGROUND_TYPES = ("solid", "gradient", "texture")
PATTERNS = ("stripes", "checkerboard", "dots")  # kinds of texture

# Named colours, chosen to be far apart; see CONTRAST for the pairs that are still too close.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 145, 30),
    "yellow": (245, 220, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 220),
    "purple": (140, 60, 190),
    "white": (245, 245, 245),
    "grey": (128, 128, 128),
    "black": (20, 20, 20),
}
COLOURS = tuple(PALETTE)

# Two colours contrast when their RGB distance is at least this. It rules out exactly
# red/orange, orange/yellow, blue/purple and purple/grey, which blur together at 64 px.
MIN_CONTRAST = 110.0

# Shapes distinguishable at ~12 px, each with the smallest rotation that maps it onto itself
# (degrees; 0 = every rotation does, so it never gets the "rotate" motion).
KINDS = ("circle", "square", "triangle", "star", "cross")
SYMMETRY = {"circle": 0, "square": 90, "triangle": 120, "star": 72, "cross": 90}

SIZES = ("small", "large")
MOTIONS = ("left", "right", "up", "down", "static", "rotate", "grow", "shrink")
EVENTS = ("appears", "changes_colour")  # an object without an event has event None
# The long split (`SynthConfig(long=True)`): more events, each at a known time.
LONG_EVENTS = ("appears", "disappears", "changes_colour", "stops")
EVENT_TIMES = {"early": 0.25, "midway": 0.5, "late": 0.75}  # when, as a fraction of the clip
LONG_CAMERAS = ("static", "static", "static", "static", "pan_left", "pan_right", "tilt_up", "tilt_down")  # half still


def rgb(colour: str) -> np.ndarray:
    """(3,) float64 RGB of a palette colour name."""
    return np.asarray(PALETTE[colour], dtype=np.float64)


def contrasts(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two (3,) RGB colours are far enough apart to tell one on top of the other."""
    return float(np.linalg.norm(a - b)) >= MIN_CONTRAST


# Pairs of palette names that contrast, precomputed for the sampler.
CONTRASTING = frozenset(
    (a, b) for a, b in itertools.permutations(COLOURS, 2) if contrasts(rgb(a), rgb(b))
)
