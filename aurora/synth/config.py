"""`SynthConfig`: how many synthetic clips to make, how big, from which seed, and where.

Flat and JSON-serialisable (it is saved next to the clips, so a re-run can tell whether the
folder holds clips from the same settings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from aurora.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass
class SynthConfig:
    num_clips: int = 5000
    size: int = 64  # frames are size x size pixels
    frames: int = 16
    fps: float = 8
    seed: int = 0
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / val / test fractions
    out: str = "data/synth"
    # caption type -> weight: each clip's training conversation asks for one type, drawn from
    # (seed, index). Only the JSONL depends on it, so clips made with other tasks are reused.
    tasks: dict[str, float] = field(default_factory=lambda: {"detailed": 1.0})
    # The long split: 32-64 frames, a still or slowly panning camera, and objects that appear,
    # disappear, change colour or stop early, midway or late (`aurora.synth.scene`).
    long: bool = False

    def __post_init__(self):
        from aurora.synth.captions import CAPTION_PROMPTS

        self.splits = tuple(float(s) for s in self.splits)
        self.out = str(self.out)
        unknown = sorted(set(self.tasks) - set(CAPTION_PROMPTS))
        if unknown or not self.tasks or not all(_positive_number(w) for w in self.tasks.values()):
            raise ConfigError(f"invalid synth config: tasks must map caption types {tuple(CAPTION_PROMPTS)} to "
                              f"positive weights, got {self.tasks!r}")
        checks = [
            (_is_int(self.num_clips) and self.num_clips >= 1,
             f"num_clips must be an integer >= 1, got {self.num_clips!r}"),
            (_is_int(self.size) and self.size >= 32 and self.size % 2 == 0,
             f"size must be an even integer >= 32 (libx264 yuv420p needs even sizes), got {self.size!r}"),
            (_is_int(self.frames) and self.frames >= 4, f"frames must be an integer >= 4, got {self.frames!r}"),
            (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0,
             f"fps must be a positive number, got {self.fps!r}"),
            (_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}"),
            (len(self.splits) == 3 and all(s >= 0 for s in self.splits) and abs(sum(self.splits) - 1) < 1e-6,
             f"splits must be 3 non-negative fractions (train, val, test) summing to 1, got {self.splits}"),
            (self.out != "", "out must be a folder path"),
            (not self.long or 32 <= self.frames <= 64, f"a long split has 32-64 frames, got {self.frames!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid synth config: {message}")

    def to_dict(self) -> dict:
        data = {**asdict(self), "splits": list(self.splits)}
        if not self.long:  # the settings of a short split read as they always have
            del data["long"]
        return data


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def parse_tasks(text: str) -> dict[str, float]:
    """"detailed=0.5,camera=0.2" (a bare name weighs 1) -> {"detailed": 0.5, "camera": 0.2}."""
    tasks = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            tasks[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"--tasks: {part!r} is not NAME or NAME=WEIGHT") from None
    return tasks


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def split_counts(config: SynthConfig) -> dict[str, int]:
    """Clips per split: train and val rounded from their fractions, test takes the rest."""
    train = round(config.num_clips * config.splits[0])
    val = min(round(config.num_clips * config.splits[1]), config.num_clips - train)
    return {"train": train, "val": val, "test": config.num_clips - train - val}


def split_of(index: int, config: SynthConfig) -> str:
    """The split of clip `index`: contiguous ranges, train first, then val, then test."""
    counts = split_counts(config)
    if index < counts["train"]:
        return "train"
    return "val" if index < counts["train"] + counts["val"] else "test"
