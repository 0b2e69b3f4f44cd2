"""Training data: LLaVA-format records -> token segments, labels and decoded frames.

A record is `{"video" or "image": path, "conversations": [{"from": "human"|"gpt", "value": ...}]}`
(also "user"/"assistant" roles); paths are relative to the data file's folder unless absolute or
a media root is given. `<video>` / `<image>` markers in the text are dropped: Aurora places the
frames itself, as at inference. Bad records (missing or corrupt media, empty conversations) are
skipped with a warning and counted, never a crash mid-epoch.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aurora import media
from aurora.errors import AuroraError, ConfigError
from aurora.prompts import IGNORE, IMAGE_PLACEHOLDER, PER_FRAME, Template, segment, user_content  # noqa: F401 (IGNORE: re-exported)

log = logging.getLogger(__name__)
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class Sample:
    """One training example, ready for batching."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    segments: list[list[int]]  # token ids between visual blocks: len == blocks + 1
    labels: list[list[int]]  # same shapes as segments; IGNORE where no loss
    index: int  # position in the record list
    timestamps: list[float] | None = None  # the frames' times in seconds (None: unknown)


def read_records(path: str | Path | list) -> list[dict]:
    """A JSON list or a JSONL file of records (or several such files, one after the other); each
    record gets `_root` (its file's folder) for relative paths."""
    if isinstance(path, (list, tuple)):
        return [record for one in path for record in read_records(one)]
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training data {path} not found")
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON/JSONL ({e})") from None
    if not isinstance(records, list):
        raise ConfigError(f"{path} must hold a list of records")
    for record in records:
        if isinstance(record, dict):
            record.setdefault("_root", str(path.parent))
    return records


def media_path(record: dict, media_root: str | None = None) -> tuple[str, str] | None:
    """(kind, path) of a record's visual, or None for a text-only record."""
    for kind in ("video", "image"):
        if record.get(kind):
            path = Path(record[kind])
            if not path.is_absolute():
                path = Path(media_root or record.get("_root", ".")) / path
            return kind, str(path)
    return None


def turns_of(record: dict) -> list[tuple[str, str]]:
    """Conversation as (role, text) with visual markers removed; ConfigError if unusable."""
    conversation = record.get("conversations")
    if not isinstance(conversation, list) or not conversation:
        raise ConfigError("empty conversation")
    turns = []
    for turn in conversation:
        role = ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
        text = turn.get("value", turn.get("content"))
        if role is None or not isinstance(text, str):
            raise ConfigError(f"bad conversation turn {turn!r}")
        for marker in ("<video>", IMAGE_PLACEHOLDER):
            text = text.replace(marker + "\n", "").replace(marker, "")
        turns.append((role, text.strip()))
    if not any(role == "assistant" for role, _ in turns):
        raise ConfigError("conversation has no answer")
    return turns


def tokenize(turns, blocks: int, template: Template, tokenizer, max_length: int, layout: str = "frames") -> tuple[list, list]:
    """Token segments split at the visual blocks, with labels on answer text only.

    The visual goes into the first user turn (AuroraCap's layout), as `blocks` placeholders laid out
    as at inference (`aurora.prompts`). Every assistant turn contributes `template.answer` (reply +
    end marker) with loss; everything else is context.
    """
    first_user = next(i for i, (role, _) in enumerate(turns) if role == "user")
    turns = [(r, user_content([blocks], t, layout, template.visual_join) if i == first_user else t) for i, (r, t) in enumerate(turns)]
    segments, labels = segment(template.pieces(turns), tokenizer)
    if sum(len(s) for s in segments) > max_length:
        raise ConfigError(f"longer than max_length {max_length} tokens")
    if len(segments) != blocks + 1:
        raise ConfigError("the text contains a literal <image> marker")
    return segments, labels


class SkipCounter:
    """Counts skipped records by reason and warns once per record."""

    def __init__(self):
        self.reasons: Counter = Counter()

    def skip(self, index: int, reason: str) -> None:
        self.reasons[reason.split(":")[0][:60]] += 1
        log.warning("skipping record %d: %s", index, reason)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


class RecordDataset:
    """Records -> samples through `_build`; a record it cannot use (an AuroraError) is skipped:
    counted, warned about once, and never read again."""

    def __init__(self, records):
        self.records = records
        self.skipped = SkipCounter()
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int):
        """The sample at `index`, or None (counted, warned once) when the record is unusable."""
        if index in self.bad:
            return None
        try:
            return self._build(index)
        except AuroraError as e:
            self.bad.add(index)
            self.skipped.skip(index, str(e))
            return None

    def _build(self, index: int):
        raise NotImplementedError


class VideoTextDataset(RecordDataset):
    """Records -> Samples; decoded frames are cached in memory after the first read."""

    def __init__(self, records, tokenizer, template: Template, num_frames: int, max_length: int = 1024,
                 media_root: str | None = None, sampling: str = "uniform", cache: bool = True, layout: str = "frames"):
        super().__init__(records)
        self.tokenizer, self.template, self.layout = tokenizer, template, layout
        self.num_frames, self.max_length = num_frames, max_length
        self.media_root, self.sampling = media_root, sampling
        self.cache: dict[int, media.Frames] | None = {} if cache else None

    def _build(self, index: int) -> Sample:
        frames = self._frames(index)
        blocks = len(frames.array) if self.layout in PER_FRAME else 1  # as the model's connector gives them
        segments, labels = tokenize(turns_of(self.records[index]), blocks, self.template,
                                    self.tokenizer, self.max_length, self.layout)
        return Sample(frames.array, segments, labels, index, list(frames.timestamps))

    def _frames(self, index: int) -> media.Frames:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        found = media_path(self.records[index], self.media_root)
        if found is None:
            raise ConfigError("record has no video or image")
        frames = media.load_visual(found[1], num_frames=self.num_frames, sampling=self.sampling)
        if self.cache is not None:
            self.cache[index] = frames
        return frames
