"""Scoring a caption of a synthetic clip (`aurora.synth`) by reading its attributes back out.

`extract(caption)` reads, by rules, what a free-text caption says about the clip; `score` compares
that with the clip's ground truth; `summarise` averages scores over a test set.

What is read (anything not said is None; an empty caption reads as all None, no objects):
  camera      static | pan_left | pan_right | tilt_up | tilt_down | zoom_in | zoom_out, from a
              pan/tilt/zoom verb followed by its direction ("pans slowly to the left", "zooms
              in"), or from a camera noun described as still ("the camera is static", "a fixed
              shot", "no camera movement") or as moving ("the camera moves right" = pan right).
  background  type (solid | gradient | texture), pattern (stripes | checkerboard | dots) and
              colours, from the words around "background"/"backdrop". One colour and no type
              word reads as solid ("a blue backdrop").
  count       a number before a generic noun ("two objects", "3 shapes", "a pair of items");
              without one, the number of objects read.
  objects     one per shape noun (circle, square, triangle, star, cross and synonyms such as
              disc, box, plus sign, "star-shaped object"), in order of mention, each with the
              size and colour words before it and the motion and event in the words after it
              (up to the next noun phrase). Plurals make several ("two red circles"; "red and
              blue squares" gives one of each colour). "The circle ...", "the red one ..." and
              "it ..." add to an object already mentioned instead of making a new one.
              Positions are not motions ("on the left", "from the left", "top right corner").

How it is scored (every aspect a float in [0, 1]; `overall` is their mean):
  camera       1 if the camera motion is right.
  background   1 if type, pattern and colours (as a set) are all right.
  count        1 if the number of objects is right.
  object_kind, object_colour, object_size, object_motion, object_event
               read objects are matched one-to-one to ground-truth objects, choosing the
               matching with the most agreeing fields (brute force over permutations; at most
               the first MAX_OBJECTS read objects are considered). Each aspect is the number of
               matched pairs agreeing on that field divided by max(#ground truth, #read), so a
               missing or an extra object costs in every object aspect. Colour is the colour
               when first visible; an event agrees when its kind and, for a colour change, the
               new colour agree; an object with no event mentioned reads as having none.
"""

from __future__ import annotations

import itertools
import re

from aurora.errors import ConfigError
from aurora.synth.vocab import COLOURS

ASPECTS = ("camera", "background", "count", "object_kind", "object_colour", "object_size",
           "object_motion", "object_event")
LONG_ASPECTS = ("event_time", "event_order")  # scored on the long split only (`SynthConfig.long`)
OBJECT_FIELDS = ("kind", "colour", "size", "motion", "event", "new_colour", "at")
MAX_OBJECTS = 8  # read objects beyond this are ignored when matching (keeps brute force small)

# ---- words ---------------------------------------------------------------------------------

COLOUR_WORDS = {c: c for c in COLOURS} | {"gray": "grey", "violet": "purple", "golden": "yellow"}
# Colours outside the palette are read as themselves, so naming them is wrong, not silent.
COLOUR_WORDS |= {c: c for c in ("pink", "brown", "cyan", "magenta", "turquoise", "beige", "gold")}
SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "smaller": "small", "mini": "small",
              "large": "large", "big": "large", "huge": "large", "larger": "large", "bigger": "large",
              "giant": "large"}
_KIND_SYNONYMS = {
    "circle": ("circle", "disc", "disk", "ball", "sphere", "orb"),
    "square": ("square", "box", "block", "cube"),
    "triangle": ("triangle", "pyramid"),
    "star": ("star",),
    "cross": ("cross",),
}
KIND_NOUNS = {}  # word -> (kind, plural)
for _kind, _words in _KIND_SYNONYMS.items():
    for _w in _words:
        KIND_NOUNS[_w] = (_kind, False)
        KIND_NOUNS[_w + ("es" if _w.endswith(("x", "s")) else "s")] = (_kind, True)
KIND_ADJECTIVES = {"circular": "circle", "round": "circle", "triangular": "triangle"}
KIND_ADJECTIVES |= {f"{w}_shaped": k for k, ws in _KIND_SYNONYMS.items() for w in ws} | {"plus_shaped": "cross"}
GENERIC_NOUNS = {"object", "objects", "shape", "shapes", "item", "items", "thing", "things",
                 "figure", "figures", "element", "elements"}
BACKGROUND_NOUNS = {"background", "backgrounds", "backdrop", "backdrops"}
CAMERA_NOUNS = {"camera", "view", "shot", "viewpoint"}
DETERMINERS = {"a", "an", "the", "this", "that", "another", "some", "no", "each", "its", "their"}
DEFINITE = {"the", "this", "that"}
NUMBERS = {"one": 1, "single": 1, "two": 2, "both": 2, "three": 3, "four": 4, "five": 5, "six": 6}
NUMBERS |= {str(n): n for n in range(10)}
MODIFIERS = {"bright", "dark", "light", "pale", "vivid", "deep", "solid", "filled", "plain",
             "simple", "flat", "colored", "coloured", "sized", "very", "rather", "fairly",
             "slightly", "other", "first", "second", "third", "last", "medium", "small_sized"}

PATTERN_WORDS = {
    "stripes": {"stripe", "stripes", "striped", "stripy", "lines", "bands", "banded"},
    "checkerboard": {"checkerboard", "checkerboards", "checkered", "chequered", "checked", "checker",
                     "checkers", "chessboard", "checks", "chequerboard"},
    "dots": {"dot", "dots", "dotted", "polka", "spots", "spotted", "spot"},
}
GRADIENT_WORDS = {"gradient", "gradients", "fades", "fade", "fading", "blends", "blending",
                  "transitions", "transitioning", "graduated", "ombre", "shading"}
SOLID_WORDS = {"solid", "plain", "uniform", "flat", "monochrome", "single", "unicolored", "unicoloured"}
TEXTURE_WORDS = {"texture", "textured", "pattern", "patterned"}
BACKGROUND_WORDS = set().union(*PATTERN_WORDS.values(), GRADIENT_WORDS, SOLID_WORDS, TEXTURE_WORDS)

CAMERA_VERBS = {  # verb -> axis
    **dict.fromkeys(("pan", "pans", "panning", "panned"), "pan"),
    **dict.fromkeys(("tilt", "tilts", "tilting", "tilted"), "tilt"),
    **dict.fromkeys(("zoom", "zooms", "zooming", "zoomed"), "zoom"),
}
CAMERA_DIRECTIONS = {
    "pan": {"left": "pan_left", "leftward": "pan_left", "leftwards": "pan_left",
            "right": "pan_right", "rightward": "pan_right", "rightwards": "pan_right"},
    "tilt": {"up": "tilt_up", "upward": "tilt_up", "upwards": "tilt_up",
             "down": "tilt_down", "downward": "tilt_down", "downwards": "tilt_down"},
    "zoom": {"in": "zoom_in", "into": "zoom_in", "closer": "zoom_in", "out": "zoom_out", "away": "zoom_out"},
}
CAMERA_FILLERS = {"to", "the", "toward", "towards", "slowly", "gradually", "steadily", "smoothly",
                  "slightly", "quickly", "a", "bit", "little", "further", "its", "across", "over"}
STILL_WORDS = {"static", "still", "stationary", "fixed", "steady", "motionless", "unmoving",
               "locked", "stable", "immobile"}

DIRECTIONS = {
    **dict.fromkeys(("left", "leftward", "leftwards"), "left"),
    **dict.fromkeys(("right", "rightward", "rightwards"), "right"),
    **dict.fromkeys(("up", "upward", "upwards", "rises", "rise", "rising", "ascends", "ascend",
                     "ascending", "climbs", "climb", "climbing"), "up"),
    **dict.fromkeys(("down", "downward", "downwards", "falls", "fall", "falling", "drops", "drop",
                     "dropping", "descends", "descend", "descending", "sinks", "sink", "sinking"), "down"),
}
ROTATE_WORDS = {"rotate", "rotates", "rotating", "rotated", "rotation", "spin", "spins", "spinning",
                "twirl", "twirls", "twirling", "revolve", "revolves", "revolving", "clockwise",
                "counterclockwise", "anticlockwise"}
GROW_WORDS = {"grow", "grows", "growing", "expand", "expands", "expanding", "enlarge", "enlarges",
              "enlarging", "swell", "swells", "swelling", "inflates", "inflating", "bigger", "larger"}
SHRINK_WORDS = {"shrink", "shrinks", "shrinking", "contract", "contracts", "contracting", "deflates",
                "deflating", "dwindles", "diminishes", "smaller"}
APPEAR_WORDS = {"appear", "appears", "appearing", "appeared", "emerge", "emerges", "emerging",
                "emerged", "materializes", "materialises", "materialize", "materialise", "arrives",
                "enters", "enter", "entering"}
DISAPPEAR_WORDS = {"disappear", "disappears", "disappearing", "disappeared", "vanish", "vanishes", "vanishing",
                   "vanished", "exits", "exit", "exiting"}
STOP_WORDS = {"stop", "stops", "stopping", "stopped", "halt", "halts", "halting", "halted", "freezes", "freeze"}
WHEN_WORDS = {"early": "early", "earlier": "early", "soon": "early", "beginning": "early", "start": "early",
              "midway": "midway", "halfway": "midway", "middle": "midway", "mid": "midway",
              "late": "late", "later": "late", "end": "late", "ending": "late"}
TURN_VERBS = {"turn", "turns", "turning", "turned"}
CHANGE_VERBS = TURN_VERBS | {"change", "changes", "changing", "changed", "become", "becomes",
                             "becoming", "became", "switch", "switches", "switching", "switched",
                             "shift", "shifts", "shifting", "goes", "go", "going", "recolors", "recolours"}
COLOUR_NOUNS = {"color", "colors", "colour", "colours", "hue"}
COPULAS = {"is", "are", "was", "were", "colored", "coloured", "painted"}
CLAUSE_OPENERS = {None, ",", "and", "then", "but", "while", "as", "before", "after", "until", ":"}
SENTENCE_ENDS = {".", "!", "?", ";"}
PLACE_NOUNS = {"side", "edge", "corner", "corners", "half", "part", "of", "hand"}
NOT_UP = {"shows", "show", "showing", "pops", "pop", "popping", "scales", "scale", "scaling", "speeds",
          "ends", "lights", "turns"}
NOT_DOWN = {"scales", "scale", "scaling", "slows", "slowing", "settles", "calms"}


# ---- reading -------------------------------------------------------------------------------


def extract(caption: str) -> dict:
    """What `caption` says about the clip, in the shape of `ground_truth`'s output.

    {"camera": str | None, "background": {"type", "pattern", "colours": [...]}, "count": int | None,
     "objects": [{"kind", "colour", "size", "motion", "event", "new_colour"}, ...]}
    """
    reader = _Reader()
    for sentence in _sentences(_tokens(caption or "")):
        reader.read(sentence)
    return reader.result()


def _tokens(text: str) -> list[str]:
    """Lower-case words, digits and punctuation, with a few multi-word phrases joined."""
    text = re.sub(r"n't\b", " not", text.lower())
    raw = re.findall(r"[a-z]+|\d+|[.!?;:,]", text)
    out: list[str] = []
    i = 0
    while i < len(raw):
        w, nxt = raw[i], raw[i + 1] if i + 1 < len(raw) else None
        if w in ("pair", "couple") and nxt == "of":
            out.append("2")
            i += 2
            if out[-2:-1] in (["a"], ["an"]):
                out.pop(-2)  # "a pair of" -> "2"
            continue
        if nxt in ("shaped", "like") and (w in KIND_NOUNS or w == "plus"):
            out.append(f"{w}_shaped")
            i += 2
            continue
        if w == "plus" and nxt in ("sign", "signs", "symbol", "symbols", "shape", "shapes", "mark", "marks"):
            out.append("crosses" if nxt.endswith("s") else "cross")
            i += 2
            continue
        out.append(w)
        i += 1
    return out


def _sentences(tokens: list[str]) -> list[list[str]]:
    sentences, current = [], []
    for w in tokens:
        if w in SENTENCE_ENDS:
            if current:
                sentences.append(current)
            current = []
        else:
            current.append(w)
    if current:
        sentences.append(current)
    return sentences


def _new_object(**fields) -> dict:
    return {f: fields.get(f) for f in OBJECT_FIELDS}


class _Reader:
    """Accumulates what the sentences of one caption say (state lives only for one `extract`)."""

    def __init__(self):
        self.camera: str | None = None
        self.count: int | None = None
        self.background_words: list[str] = []
        self.objects: list[dict] = []

    def result(self) -> dict:
        return {
            "camera": self.camera,
            "background": _background(self.background_words),
            "count": self.count if self.count is not None else (len(self.objects) or None),
            "objects": self.objects,
        }

    def read(self, words: list[str]) -> None:
        used = self._camera_verbs(words)  # indices consumed by "pans left" etc.
        heads = _heads(words)
        starts = [_phrase_start(words, i, kind, heads) for i, kind in heads]
        for n, (i, kind) in enumerate(heads):
            end = starts[n + 1] if n + 1 < len(heads) else len(words)
            phrase = range(starts[n], i)  # determiner and adjectives before the noun
            rest = [j for j in range(i + 1, end) if j not in used]  # what is said about it
            if kind == "background":
                self.background_words += [words[j] for j in phrase] + [words[j] for j in rest]
            elif kind == "camera":
                self._camera_noun(words, phrase, rest)
            else:
                self._object(words, i, kind, phrase, rest)

    # -- camera --

    def _camera_verbs(self, words: list[str]) -> set[int]:
        """Find "pans (slowly) to the left", "zooms in", "a leftward pan"; return the indices used."""
        for i, w in enumerate(words):
            axis = CAMERA_VERBS.get(w)
            if axis is None:
                continue
            before = words[i - 1] if i else None
            if before in CAMERA_DIRECTIONS[axis] and axis != "zoom":
                self.camera = self.camera or CAMERA_DIRECTIONS[axis][before]
                return {i - 1, i}
            j = i + 1
            while j < len(words) and words[j] in CAMERA_FILLERS and words[j] not in CAMERA_DIRECTIONS[axis]:
                j += 1
            if j < len(words) and words[j] in CAMERA_DIRECTIONS[axis] and words[j - 1] != "from":
                self.camera = self.camera or CAMERA_DIRECTIONS[axis][words[j]]
                return set(range(i, j + 1))
        return set()

    def _camera_noun(self, words: list[str], phrase: range, rest: list[int]) -> None:
        if self.camera is not None:
            return
        said = [words[j] for j in phrase] + [words[j] for j in rest]
        if any(w in STILL_WORDS for w in said) or "place" in said or _negated_motion(words, rest):
            self.camera = "static"
        elif phrase and words[phrase[0]] == "no" and rest and words[rest[0]] in ("motion", "movement", "moves"):
            self.camera = "static"
        else:
            for j in rest:
                d = _direction(words, j)
                if d is not None:
                    self.camera = {"left": "pan_left", "right": "pan_right", "up": "tilt_up", "down": "tilt_down"}[d]
                    return

    # -- objects --

    def _object(self, words: list[str], i: int, head: str, phrase: range, rest: list[int]) -> None:
        adjectives = [words[j] for j in phrase]
        determiner = next((w for w in adjectives if w in DETERMINERS), None)
        number = next((NUMBERS[w] for w in adjectives if w in NUMBERS), None)
        colours = [COLOUR_WORDS[w] for w in adjectives if w in COLOUR_WORDS]
        size = next((SIZE_WORDS[w] for w in adjectives if w in SIZE_WORDS), None)
        kind = KIND_NOUNS[words[i]][0] if head == "kind" else None
        kind = kind or next((KIND_ADJECTIVES.get(w) or KIND_NOUNS.get(w, (None,))[0]
                             for w in adjectives if w in KIND_ADJECTIVES or w in KIND_NOUNS), None)
        plural = KIND_NOUNS[words[i]][1] if head == "kind" else words[i].endswith("s")
        said = _predicate(words, rest)
        if head == "pronoun":  # "it moves left": the last object mentioned
            if self.objects:
                _fill(self.objects[-1], said)
            return
        # A colour or size stated after the noun ("the circle is red") counts if none came before.
        stated_size, stated_colour = said.pop("size", None), said.pop("colour", None)
        size = size or stated_size
        colours = colours or ([stated_colour] if stated_colour else [])
        if head == "generic" and kind is None and not colours and size is None:
            if number is not None and self.count is None and determiner not in DEFINITE:
                self.count = number  # "there are two objects"
            elif determiner in DEFINITE and not plural and len(self.objects) == 1:
                _fill(self.objects[0], said)  # "the object moves left"
            return
        if determiner in DEFINITE or head == "one":  # "the circle", "the red one": already mentioned?
            known = [o for o in self.objects
                     if (kind is None or o["kind"] == kind)
                     and (not colours or o["colour"] == colours[0])
                     and (size is None or o["size"] == size)]
            if known:
                for o in known if plural else known[:1]:
                    _fill(o, said)
                return
        copies = number if number is not None else (2 if plural else 1)
        for c in range(min(copies, MAX_OBJECTS)):
            colour = colours[c] if len(colours) == copies else (colours[0] if colours else None)
            self.objects.append(_new_object(kind=kind, colour=colour, size=size, **said))


def _fill(obj: dict, said: dict) -> None:
    """Add what a later mention says to an object, keeping what was already known."""
    for field, value in said.items():
        if obj.get(field) is None and value is not None:
            obj[field] = value


def _heads(words: list[str]) -> list[tuple[int, str]]:
    """(index, role) of each noun a phrase is about: kind, generic, one, pronoun, background, camera."""
    nouns = set(KIND_NOUNS) | GENERIC_NOUNS
    # "a circle crosses the frame", "a dot that circles": verbs that look like shape nouns.
    verbs = {i for i, w in enumerate(words) if w in ("cross", "crosses", "circles", "circle") and i and (
        words[i - 1] in nouns or words[i - 1] in ("it", "which", "who")
        or (words[i - 1] == "that" and i > 1 and words[i - 2] in nouns))}
    heads: list[tuple[int, str]] = []
    for i, w in enumerate(words):
        before = words[i - 1] if i else None
        after = words[i + 1] if i + 1 < len(words) else None
        role = None
        if w in KIND_NOUNS and i not in verbs:
            # "square block", "star shape": an adjective of the next noun.
            role = None if after in nouns and (i + 1) not in verbs else "kind"
        elif w in GENERIC_NOUNS:
            role = "generic"
        elif w in ("one", "ones") and (before in COLOUR_WORDS or before in SIZE_WORDS) and not (
                after in KIND_NOUNS or after in GENERIC_NOUNS):
            role = "one"
        elif w in BACKGROUND_NOUNS:
            role = "background"
        elif w == "camera" or (w in CAMERA_NOUNS and (before in DETERMINERS or before in STILL_WORDS)):
            role = "camera"  # "view"/"shot" only as nouns ("the view"), not "comes into view"
        elif w == "it" and before in CLAUSE_OPENERS:
            role = "pronoun"
        if role:
            heads.append((i, role))
    return heads


def _phrase_start(words: list[str], head: int, role: str, heads: list[tuple[int, str]]) -> int:
    """Index where the noun phrase of `words[head]` starts: back over its adjectives to a determiner."""
    if role == "pronoun":
        return head
    previous = max([i for i, _ in heads if i < head], default=-1)
    background = role == "background"
    i = head
    while i - 1 > previous:
        w = words[i - 1]
        if w in DETERMINERS:
            return i - 1
        adjective = (w in NUMBERS or w in SIZE_WORDS or w in COLOUR_WORDS or w in KIND_ADJECTIVES
                     or w in KIND_NOUNS or w in MODIFIERS or (background and w in BACKGROUND_WORDS)
                     or (role == "camera" and w in STILL_WORDS))
        # "red and white", "red, white" (and for backgrounds "orange to white") join colours.
        joins = w in ("and", "or", ",") or (background and w == "to")
        if joins and i - 2 > previous and words[i - 2] in COLOUR_WORDS and (
                words[i] in COLOUR_WORDS or words[i] in BACKGROUND_WORDS):
            adjective = True
        if not adjective:
            break
        i -= 1
    return i


def _predicate(words: list[str], rest: list[int]) -> dict:
    """Motion, event and stated colour/size in the words after an object's noun."""
    cues: list[tuple[int, str]] = []  # (index, motion), the earliest wins
    event: tuple[int, str, str | None] | None = None
    said: dict = {}
    allowed = set(rest)
    for j in rest:
        w = words[j]
        after = words[j + 1] if j + 1 in allowed else None
        after2 = words[j + 2] if j + 2 in allowed else None
        if w in ROTATE_WORDS or (w in TURN_VERBS and after in ("around", "round")):
            cues.append((j, "rotate"))
        elif w in GROW_WORDS or (w in ("scales", "scale", "scaling", "scaled") and after == "up") or (
                w in ("increases", "increase", "increasing") and "size" in (after, after2)):
            cues.append((j, "grow"))
        elif w in SHRINK_WORDS or (w in ("scales", "scale", "scaling", "scaled") and after == "down") or (
                w in ("decreases", "decrease", "decreasing", "reduces") and "size" in (after, after2)):
            cues.append((j, "shrink"))
        elif _direction(words, j) is not None:
            cues.append((j, _direction(words, j)))
        elif (w in STILL_WORDS and not (w == "still" and (after or "").endswith("ing"))) or (
                w == "place" and words[j - 1] == "in") or (
                w in ("stays", "stay", "remains", "remain") and after in ("put", "where")):
            cues.append((j, "static"))
        elif w == "not" and (after in ("move", "moves", "moving", "travel", "shift") or after2 in ("move", "moving")):
            cues.append((j, "static"))
        if event is None:
            event = _event(words, j, allowed)
        if w in COPULAS and after is not None:
            target = after2 if after in ("a", "an", "very") and after2 else after
            if target in COLOUR_WORDS and not any(words[k] in CHANGE_VERBS for k in range(max(0, j - 2), j)):
                said["colour"] = COLOUR_WORDS[target]
            elif target in SIZE_WORDS:
                said["size"] = SIZE_WORDS[target]
    said["motion"] = min(cues)[1] if cues else None
    said["event"], said["new_colour"] = (event[1], event[2]) if event else (None, None)
    said["at"] = _when(words, event[0], allowed) if event else None
    return said


def _event(words: list[str], j: int, allowed: set[int]) -> tuple[int, str, str | None] | None:
    """An event starting at `words[j]`: appearing, or a colour change (with the new colour)."""
    w = words[j]
    after = words[j + 1] if j + 1 in allowed else None
    after2 = words[j + 2] if j + 2 in allowed else None
    if w in APPEAR_WORDS and after not in ("to", "as"):
        return (j, "appears", None)
    if w in DISAPPEAR_WORDS or (w in ("fades", "fade", "fading", "goes", "go") and after in ("out", "away")):
        return (j, "disappears", None)
    if w in STOP_WORDS or (w in ("comes", "come", "coming") and after == "to" and after2 in ("a", "rest", "stop")):
        return (j, "stops", None)
    if (w in ("shows", "show", "pops", "pop", "popping", "showing") and after in ("up", "in", "into")) or (
            w in ("comes", "come", "coming") and after == "into" and after2 == "view") or (
            w in ("fades", "fade", "fading") and after == "in") or (
            w in ("becomes", "become", "becoming") and after == "visible"):
        return (j, "appears", None)
    if w in CHANGE_VERBS:
        window = []
        for k in range(j + 1, j + 7):
            if k not in allowed or words[k] in ("and", ",", "while", "then", "as", "but", "before", "after"):
                break
            window.append(words[k])
        colours = [(n, COLOUR_WORDS[x]) for n, x in enumerate(window) if x in COLOUR_WORDS]
        if colours:
            targets = [c for n, c in colours if n > 0 and window[n - 1] in ("to", "into")]
            return (j, "changes_colour", targets[-1] if targets else colours[0][1])
        if any(x in COLOUR_NOUNS for x in window):
            return (j, "changes_colour", None)
    return None


def _when(words: list[str], j: int, allowed: set[int]) -> str | None:
    """When the event named at `words[j]` happens ("appears early", "turns red late", "stops at the
    end"), from the words after it up to the next clause; None where no time is said."""
    for k in range(j + 1, j + 8):
        if k not in allowed or words[k] in ("and", ",", "while", "then", "but", "."):
            return None
        if words[k] in WHEN_WORDS:
            return WHEN_WORDS[words[k]]
    return None


def _direction(words: list[str], j: int) -> str | None:
    """The motion direction `words[j]` names, or None where it names a position instead."""
    w = words[j]
    d = DIRECTIONS.get(w)
    before = words[j - 1] if j else None
    before2 = words[j - 2] if j > 1 else None
    after = words[j + 1] if j + 1 < len(words) else None
    if w in ("top", "bottom") and before == "the" and before2 in ("to", "toward", "towards"):
        return "up" if w == "top" else "down"  # "moves toward the top"
    if d is None:
        return None
    if before == "from" or (before == "the" and before2 in ("on", "at", "in", "from", "of")):
        return None  # "on the left", "from the left": where, not which way
    if before in ("top", "bottom", "upper", "lower") or after in PLACE_NOUNS:
        return None  # "top left corner", "the right side", "left of the square"
    if (w == "up" and before in NOT_UP) or (w == "down" and before in NOT_DOWN):
        return None  # "shows up", "scales down": not a direction
    return d


def _negated_motion(words: list[str], rest: list[int]) -> bool:
    """ "does not move", "is not moving" among the given word indices."""
    return any(words[j] == "not" and any(words[k] in ("move", "moves", "moving", "pan", "motion")
                                         for k in (j + 1, j + 2) if k < len(words)) for j in rest)


def _background(words: list[str]) -> dict:
    colours = list(dict.fromkeys(COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS))
    pattern = next((p for w in words for p, ws in PATTERN_WORDS.items() if w in ws), None)
    if pattern is not None:
        kind = "texture"
    elif any(w in GRADIENT_WORDS for w in words):
        kind = "gradient"
    elif any(w in SOLID_WORDS for w in words) or len(colours) == 1:
        kind = "solid"
    elif any(w in TEXTURE_WORDS for w in words):
        kind = "texture"
    else:
        kind = None
    return {"type": kind, "pattern": pattern, "colours": colours}


# ---- scoring -------------------------------------------------------------------------------


def ground_truth(attributes: dict) -> dict:
    """A clip's attributes (`Scene.to_dict()`, the JSONL `attributes`) in `extract`'s shape."""
    try:
        background = attributes["background"]
        return {
            "camera": attributes["camera"],
            "background": {"type": background["type"], "pattern": background.get("pattern"),
                           "colours": list(background["colours"])},
            "count": len(attributes["objects"]),
            # a short clip's events happen midway (`aurora.synth.scene.midpoint`)
            "objects": [{f: o.get(f) for f in OBJECT_FIELDS} | {"at": o.get("at") or ("midway" if o.get("event") else None)}
                        for o in attributes["objects"]],
        }
    except (KeyError, TypeError) as e:
        raise ConfigError(f"ground-truth attributes lack {e}; pass a synthetic clip's 'attributes'") from None


def score(attributes_gt: dict, caption: str) -> dict:
    """Per-aspect correctness (floats in [0, 1]) of `caption`, plus `overall` and `extracted`."""
    truth = ground_truth(attributes_gt)
    read = extract(caption)
    result = {
        "camera": float(read["camera"] is not None and read["camera"] == truth["camera"]),
        "background": float(
            read["background"]["type"] == truth["background"]["type"]
            and read["background"]["pattern"] == truth["background"]["pattern"]
            and set(read["background"]["colours"]) == set(truth["background"]["colours"])
        ),
        "count": float(read["count"] == truth["count"]),
    }
    pairs, scores = _object_scores(truth["objects"], read["objects"][:MAX_OBJECTS])
    result |= scores
    aspects = ASPECTS
    if attributes_gt.get("long"):  # when things happen, and in what order
        result |= _timeline_scores(truth["objects"], read["objects"][:MAX_OBJECTS], pairs)
        aspects += tuple(a for a in LONG_ASPECTS if result[a] is not None)
    result["overall"] = sum(result[a] for a in aspects) / len(aspects)
    result["extracted"] = read
    return result


def _agreement(truth: dict, read: dict) -> dict[str, bool]:
    """Which object aspects one read object gets right about one ground-truth object."""
    same = {f: read[f] is not None and read[f] == truth[f] for f in ("kind", "colour", "size", "motion")}
    same["event"] = (read["event"], read["new_colour"]) == (truth["event"], truth["new_colour"])
    return same


def _object_scores(truth: list[dict], read: list[dict]) -> tuple[list[tuple[int, int]], dict[str, float]]:
    """Match read objects to true ones one-to-one (most agreeing fields); the (truth, read) pairs
    and the fractions per field."""
    fields = ("kind", "colour", "size", "motion", "event")
    best: list[dict[str, bool]] = []
    best_pairs: list[tuple[int, int]] = []
    if truth and read:
        table = [[_agreement(t, r) for r in read] for t in truth]  # (#truth, #read)
        best_total = -1
        if len(read) >= len(truth):
            pairings = ([(t, r) for t, r in enumerate(p)] for p in itertools.permutations(range(len(read)), len(truth)))
        else:
            pairings = ([(t, r) for r, t in enumerate(p)] for p in itertools.permutations(range(len(truth)), len(read)))
        for pairs in pairings:
            agreed = [table[t][r] for t, r in pairs]
            total = sum(sum(a.values()) for a in agreed)
            if total > best_total:  # strict: the first best pairing wins ties, deterministically
                best, best_total, best_pairs = agreed, total, pairs
    denominator = max(len(truth), len(read), 1)
    return best_pairs, {f"object_{f}": sum(a[f] for a in best) / denominator for f in fields}


def _timeline_scores(truth: list[dict], read: list[dict], pairs: list[tuple[int, int]]) -> dict:
    """The long split's aspects over the matched (truth, read) pairs.

    event_time   per object: the event, its new colour and its time (early / midway / late) all
                 right (no event and none said counts as right), over max(#truth, #read).
    event_order  per pair of true events at different times whose objects were both read: the
                 read times put them in the same order; None (not scored) with no such pair.
    """
    rank = {"early": 0, "midway": 1, "late": 2}
    matched = dict(pairs)
    right = sum((read[r]["event"], read[r]["new_colour"], read[r]["at"])
                == (truth[t]["event"], truth[t]["new_colour"], truth[t]["at"]) for t, r in pairs)
    timed = [t for t in range(len(truth)) if truth[t]["event"] and t in matched]
    ordered = [(a, b) for a, b in itertools.combinations(timed, 2) if truth[a]["at"] != truth[b]["at"]]
    agree = 0
    for a, b in ordered:
        said_a, said_b = read[matched[a]]["at"], read[matched[b]]["at"]
        if said_a and said_b:
            agree += (rank[said_a] < rank[said_b]) == (rank[truth[a]["at"]] < rank[truth[b]["at"]]) and said_a != said_b
    return {"event_time": right / max(len(truth), len(read), 1),
            "event_order": agree / len(ordered) if ordered else None}


def summarise(records: list[dict]) -> dict:
    """Mean of each aspect and of `overall` over `score` results; `n` is how many."""
    if not records:
        raise ConfigError("no scored captions to summarise")
    keys = ASPECTS + ("overall",)
    out = {k: sum(float(r[k]) for r in records) / len(records) for k in keys} | {"n": len(records)}
    for k in LONG_ASPECTS:  # the long split's, averaged where scored
        values = [float(r[k]) for r in records if r.get(k) is not None]
        if values:
            out[k] = sum(values) / len(values)
    return out
