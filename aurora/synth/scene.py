"""A synthetic scene: its attributes as dataclasses, how objects move, and how scenes are sampled.

Coordinates are fractions of the frame (0 = left/top edge, 1 = right/bottom edge), so a scene
renders at any frame size. Objects live in SCREEN coordinates: the camera moves only the
background, so an object's motion ("moves left") is exactly what the viewer sees on screen,
whatever the camera does. Objects never overlap while both are visible, stay fully on screen,
and are listed left to right by their position when they are first visible.

Each attribute a caption mentions (camera, background type/pattern/colours, and per object kind,
colour, size, motion, event, new_colour, at) is ground truth; the remaining fields (orientation,
speckle_seed, x, y, angle) only say where things are drawn.

The long split (`SynthConfig.long`, 32-64 frames) is for temporal redundancy and temporal events:
a still camera half the time (else a slow pan or tilt), and objects that appear, disappear,
change colour or stop `at` a known time (early, midway or late: a quarter, half or three quarters
through the clip), so what stays the same and when things happen are both known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurora.synth.config import SynthConfig
from aurora.synth.vocab import (
    BACKGROUND_TYPES,
    CAMERAS,
    COLOURS,
    CONTRASTING,
    EVENT_TIMES,
    KINDS,
    LONG_CAMERAS,
    LONG_EVENTS,
    MOTIONS,
    PATTERNS,
    SIZES,
    SYMMETRY,
    contrasts,
    rgb,
)

DIAMETER = {"small": 0.22, "large": 0.36}  # shape extent as a fraction of the frame (14 / 23 px at 64)
MOVE = 0.3  # distance a left/right/up/down object travels while visible, fraction of the frame
GROW = 1.5  # grow scales 1 -> GROW, shrink 1 -> 1 / GROW (so sizes stay in ~12-35 px at 64)
ROTATION = 60.0  # degrees turned by a rotating object; below half of every kind's symmetry
RADIUS = 0.6  # collision radius per unit diameter: covers every shape's corners
ORIENTATIONS = (0, 45, 90, 135)  # gradient / stripe directions, degrees


@dataclass(frozen=True)
class Background:
    type: str  # solid | gradient | texture
    colours: tuple[str, ...]  # solid: (colour,); gradient: (from, to); texture: (base, pattern colour)
    pattern: str | None = None  # texture only: stripes | checkerboard | dots
    orientation: int = 0  # render only: gradient / stripe direction in degrees
    speckle_seed: int = 0  # render only: where the low-contrast speckles go


@dataclass(frozen=True)
class SceneObject:
    kind: str
    colour: str  # colour when first visible
    size: str  # size when first visible (grow / shrink change it afterwards)
    motion: str
    event: str | None = None  # None | appears | changes_colour (long split: also disappears | stops)
    new_colour: str | None = None  # changes_colour only: colour from the event on
    at: str | None = None  # long split: when the event happens (EVENT_TIMES); short: midway
    x: float = 0.5  # render only: centre when first visible, fraction of the frame width
    y: float = 0.5  # render only: centre when first visible, fraction of the frame height
    angle: float = 0.0  # render only: rotation when first visible, degrees


@dataclass(frozen=True)
class Scene:
    camera: str
    background: Background
    objects: tuple[SceneObject, ...]  # left to right by first visible position
    long: bool = False  # a long-split scene (events at known times)

    def to_dict(self) -> dict:
        """Plain JSON types (lists, not tuples), so `Scene.from_dict(json.loads(...))` round-trips.
        A short scene's dict has no `long` / `at` keys (it reads as it always has)."""
        background = vars(self.background) | {"colours": list(self.background.colours)}
        objects = [{k: v for k, v in vars(o).items() if self.long or k != "at"} for o in self.objects]
        return {"camera": self.camera, "background": background, "objects": objects} | (
            {"long": True} if self.long else {})

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        background = Background(**{**data["background"], "colours": tuple(data["background"]["colours"])})
        return cls(data["camera"], background, tuple(SceneObject(**o) for o in data["objects"]),
                   bool(data.get("long", False)))


@dataclass(frozen=True)
class Track:
    """Where one object is in each of T frames (all arrays (T,))."""

    x: np.ndarray  # centre, fraction of frame width
    y: np.ndarray  # centre, fraction of frame height
    diameter: np.ndarray  # extent, fraction of the frame (size x grow/shrink scale)
    angle: np.ndarray  # degrees
    visible: np.ndarray  # bool
    colour: tuple[str, ...]  # palette name per frame


def midpoint(frames: int) -> int:
    """First frame of the second half: where objects appear and colours change."""
    return frames // 2


def event_frame(obj: SceneObject, frames: int) -> int:
    """The first frame that shows `obj`'s event (appeared, gone, new colour, stopped)."""
    if obj.at is None:
        return midpoint(frames)
    return int(round(frames * EVENT_TIMES[obj.at]))


def track(obj: SceneObject, frames: int) -> Track:
    """The object's position, extent, rotation, visibility and colour in every frame.

    Motion runs over the frames where the object is visible, so an object that appears midway
    covers the same distance (faster) as one seen from the start.
    """
    t = np.arange(frames)
    when = event_frame(obj, frames)
    first = when if obj.event == "appears" else 0
    last = when - 1 if obj.event in ("disappears", "stops") else frames - 1  # motion ends here
    progress = np.clip((t - first) / max(last - first, 1), 0.0, 1.0)  # (T,) 0 -> 1 while moving
    dx = {"left": -MOVE, "right": MOVE}.get(obj.motion, 0.0)
    dy = {"up": -MOVE, "down": MOVE}.get(obj.motion, 0.0)
    growth = {"grow": GROW, "shrink": 1 / GROW}.get(obj.motion, 1.0)
    turn = ROTATION if obj.motion == "rotate" else 0.0
    changed = obj.event == "changes_colour"
    return Track(
        x=obj.x + dx * progress,
        y=obj.y + dy * progress,
        diameter=DIAMETER[obj.size] * growth**progress,  # geometric, so growth looks steady
        angle=obj.angle + turn * progress,
        visible=(t >= first) & ((t < when) if obj.event == "disappears" else True),
        colour=tuple(obj.new_colour if changed and i >= when else obj.colour for i in t),
    )


def sample_scene(rng: np.random.Generator, config: SynthConfig) -> Scene:
    """One random scene; everything random comes from `rng` (seed it with (seed, clip index))."""
    cameras = LONG_CAMERAS if config.long else CAMERAS
    camera = cameras[rng.integers(len(cameras))]
    background = _sample_background(rng)
    return Scene(camera, background, _sample_objects(rng, background, config), config.long)


def _sample_background(rng: np.random.Generator) -> Background:
    kind = BACKGROUND_TYPES[rng.integers(len(BACKGROUND_TYPES))]
    first = COLOURS[rng.integers(len(COLOURS))]
    colours: tuple[str, ...] = (first,)
    if kind != "solid":  # a second colour that stands out against the first
        partners = [c for c in COLOURS if (first, c) in CONTRASTING]
        colours = (first, partners[rng.integers(len(partners))])
    pattern = PATTERNS[rng.integers(len(PATTERNS))] if kind == "texture" else None
    orientation = ORIENTATIONS[rng.integers(len(ORIENTATIONS))]
    return Background(kind, colours, pattern, orientation, int(rng.integers(2**31)))


def object_colours(background: Background) -> list[str]:
    """Palette colours that stand out against every colour the background shows.

    A gradient also shows its blends (red -> yellow passes through orange, black -> white
    through grey), so those are checked at a quarter, half and three quarters.
    """
    shown = [rgb(c) for c in background.colours]
    if background.type == "gradient":
        a, b = shown
        shown += [a + (b - a) * f for f in (0.25, 0.5, 0.75)]
    return [c for c in COLOURS if all(contrasts(rgb(c), s) for s in shown)]


def _sample_objects(
    rng: np.random.Generator, background: Background, config: SynthConfig
) -> tuple[SceneObject, ...]:
    palette = object_colours(background)
    count = int(rng.integers(1, 4))  # drawn once, so crowded scenes are not under-represented
    for _ in range(1000):  # rejection sampling; one or two rounds are almost always enough
        attributes = [_sample_attributes(rng, palette, config.long) for _ in range(count)]
        if all(a["event"] == "appears" for a in attributes):
            continue  # someone must be there from the first frame
        for _ in range(20):  # new positions for the same objects before giving up on them
            placed = _place_all(rng, attributes, config)
            if placed is not None:
                starts = [track(o, config.frames) for o in placed]
                order = sorted(range(count), key=lambda i: (_first_x(starts[i]), placed[i].y))
                return tuple(placed[i] for i in order)
    raise RuntimeError("could not place the objects of a synthetic scene; this is a bug")


def _place_all(rng: np.random.Generator, attributes: list[dict], config: SynthConfig) -> list[SceneObject] | None:
    """All objects placed one after another, or None where one of them found no room."""
    placed: list[SceneObject] = []
    for a in attributes:
        obj = _place(rng, a, placed, config)
        if obj is None:
            return None
        placed.append(obj)
    return placed


def _sample_attributes(rng: np.random.Generator, palette: list[str], long: bool = False) -> dict:
    kind = KINDS[rng.integers(len(KINDS))]
    size = SIZES[rng.integers(len(SIZES))]
    # Rotation only where it shows; small things never shrink nor large ones grow (>= ~12 px).
    motions = [
        m for m in MOTIONS
        if not (m == "rotate" and SYMMETRY[kind] == 0)
        and not (m == "shrink" and size == "small")
        and not (m == "grow" and size == "large")
    ]
    motion = motions[rng.integers(len(motions))]
    colour = palette[rng.integers(len(palette))]
    draw = rng.random()
    at = None
    if long:  # one object in five without an event; "stops" only for something that moves
        events = [e for e in LONG_EVENTS if not (e == "stops" and motion == "static")]
        event = None if draw < 0.2 else events[rng.integers(len(events))]
        at = None if event is None else tuple(EVENT_TIMES)[rng.integers(len(EVENT_TIMES))]
    else:
        event = None if draw < 0.6 else "appears" if draw < 0.8 else "changes_colour"
    new_colour = None
    if event == "changes_colour":
        others = [c for c in palette if c != colour]
        new_colour = others[rng.integers(len(others))]
    angle = round(float(rng.uniform(0, SYMMETRY[kind])), 1) if SYMMETRY[kind] else 0.0
    extra = {"at": at} if long else {}
    return dict(kind=kind, colour=colour, size=size, motion=motion, event=event, new_colour=new_colour, angle=angle,
                **extra)


def _place(
    rng: np.random.Generator, attributes: dict, placed: list[SceneObject], config: SynthConfig, tries: int = 50
) -> SceneObject | None:
    """The object at a random start that keeps its whole path on screen and clear of `placed`.

    `tries` candidate starts are drawn at once and checked together; the first that fits wins.
    """
    pixel = 1.0 / config.size
    path = track(SceneObject(**attributes, x=0.0, y=0.0), config.frames)  # offsets from the start
    margin = RADIUS * path.diameter.max() + pixel  # centre this far from every edge keeps it inside
    # Start ranges such that every point of the path lies in [margin, 1 - margin].
    xs = rng.uniform(margin - path.x.min(), 1 - margin - path.x.max(), tries).round(4)  # (N,)
    ys = rng.uniform(margin - path.y.min(), 1 - margin - path.y.max(), tries).round(4)
    first = int(np.argmax(path.visible))
    fits = np.ones(tries, dtype=bool)
    for other in (track(o, config.frames) for o in placed):
        both = path.visible & other.visible  # (T,)
        distance = np.hypot(xs[:, None] + path.x - other.x, ys[:, None] + path.y - other.y)  # (N, T)
        reach = RADIUS * (path.diameter + other.diameter) + pixel  # (T,)
        fits &= np.all((distance >= reach) | ~both, axis=1)  # no overlap while both are visible
        fits &= np.abs(xs + path.x[first] - _first_x(other)) >= 2 * pixel  # a clear left-to-right order
    if not fits.any():
        return None
    n = int(np.argmax(fits))
    return SceneObject(**attributes, x=float(xs[n]), y=float(ys[n]))


def _first_x(t: Track) -> float:
    return float(t.x[np.argmax(t.visible)])
