"""Training the vision tower on the synthetic ground truth directly (`objective: attributes`).

A captioner trained from scratch learns object kind slowly or not at all through the language
model: the caption loss gives the tower almost no usable shape signal until the language model
already reads it (README, "The default model"). This objective skips the language model: linear
heads read the tower's output tokens and are trained on the attributes `aurora synth` records
carry, so the tower learns to *see* before a caption stage teaches the language model to *say*.

Targets, from a record's `attributes` and the sampled frame indices:
- per token (dense), through the same ToMe merging as captioning (each merged token takes the
  label most of its patches have): is it on an object, and if so that object's kind, colour in
  this frame, size and motion, and its place in the caption's left-to-right order of objects.
  Putting every attribute of an object, and which object it is, on that object's own tokens is
  what lets a language model bind colour to motion when a clip holds several objects.
- per clip (on the size-weighted mean of all its tokens): camera motion, background type,
  pattern, colours, and the number of objects.

The heads are discarded at the end; the exported model is the captioner with its trained tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aurora import media
from aurora.errors import ConfigError
from aurora.synth.render import coverage
from aurora.synth.scene import SceneObject, track
from aurora.synth.vocab import BACKGROUND_TYPES, CAMERAS, COLOURS, KINDS, MOTIONS, PATTERNS, SIZES
from aurora.train.data import IGNORE, RecordDataset, media_path

# name -> classes; dense heads label object tokens only, except "object" (object vs background)
TOKEN_HEADS = {"object": ("background", "object"), "kind": KINDS, "colour": COLOURS, "size": SIZES, "motion": MOTIONS,
               "order": ("first", "second", "third")}
CLIP_HEADS = {
    "camera": CAMERAS,
    "background": BACKGROUND_TYPES,
    "pattern": ("none", *PATTERNS),
    "background_colour": COLOURS,
    "background_colour_2": COLOURS,  # a solid background repeats its one colour
    "count": ("1", "2", "3"),
}
# per object and frame, on the max over the tokens that touch it (what a pooled probe learns
# shape from: the contour tokens, which the dense labels leave out)
OBJECT_HEADS = {"kind": KINDS, "colour": COLOURS, "size": SIZES, "motion": MOTIONS}
MAX_OBJECTS = 3
MIN_COVER = 0.3  # share of a patch an object must cover for the patch to carry its dense labels
MIN_TOUCH = 0.05  # share of a patch an object must cover for the patch to count as touching it


@dataclass
class Targets:
    tokens: dict[str, np.ndarray]  # head -> (T, P) class ids per patch, IGNORE where unlabelled
    objects: dict[str, np.ndarray]  # head -> (T, MAX_OBJECTS) class ids, IGNORE where not visible
    members: np.ndarray  # (T, MAX_OBJECTS, P) bool: the patches each object touches
    clip: dict[str, int]  # head -> class id


@dataclass
class AttributeSample:
    """Frames of one clip and its targets."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    targets: Targets
    index: int


def synth_targets(attributes: dict, indices: list[int], total_frames: int, size: int, patch: int) -> Targets:
    """Per-patch and per-clip targets of a clip whose frames `indices` (of `total_frames`) are
    shown at `size` px in patches of `patch` px. ConfigError when the attributes are unusable."""
    try:
        objects = [SceneObject(**o) for o in attributes["objects"]]
        background = attributes["background"]
        colours = list(background["colours"])
        clip = {
            "camera": CAMERAS.index(attributes["camera"]),
            "background": BACKGROUND_TYPES.index(background["type"]),
            "pattern": CLIP_HEADS["pattern"].index(background.get("pattern") or "none"),
            "background_colour": COLOURS.index(colours[0]),
            "background_colour_2": COLOURS.index(colours[-1]),
            "count": len(objects) - 1,
        }
        if not 1 <= len(objects) <= MAX_OBJECTS:
            raise ValueError(f"{len(objects)} objects")
        tracks = [track(o, total_frames) for o in objects]
        per_object = [(KINDS.index(o.kind), SIZES.index(o.size), MOTIONS.index(o.motion)) for o in objects]
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"record has no usable synth attributes ({e})") from None
    grid = size // patch
    tokens = {name: np.full((len(indices), grid * grid), IGNORE, dtype=np.int64) for name in TOKEN_HEADS}
    tokens["object"][:] = 0
    per_frame = {name: np.full((len(indices), MAX_OBJECTS), IGNORE, dtype=np.int64) for name in OBJECT_HEADS}
    members = np.zeros((len(indices), MAX_OBJECTS, grid * grid), dtype=bool)
    for t, frame in enumerate(indices):
        best = np.full(grid * grid, MIN_COVER)  # the object covering most of each patch wins
        for order, (obj, tr, (kind, obj_size, motion)) in enumerate(zip(objects, tracks, per_object)):
            if not tr.visible[frame]:
                continue
            alpha = coverage(obj.kind, tr.x[frame] * size, tr.y[frame] * size, tr.diameter[frame] * size,
                             tr.angle[frame], size)  # (S, S)
            share = alpha.reshape(grid, patch, grid, patch).mean(axis=(1, 3)).reshape(-1)  # (P,)
            members[t, order] = share >= MIN_TOUCH
            colour = COLOURS.index(tr.colour[frame])
            for name, value in (("kind", kind), ("colour", colour), ("size", obj_size), ("motion", motion)):
                per_frame[name][t, order] = value
            mine = share >= best
            best = np.where(mine, share, best)
            tokens["object"][t, mine] = 1
            tokens["kind"][t, mine] = kind
            tokens["colour"][t, mine] = colour
            tokens["size"][t, mine] = obj_size
            tokens["motion"][t, mine] = motion
            tokens["order"][t, mine] = order  # objects are listed left to right as first seen
    for t in range(len(indices)):  # an object too small to touch a patch enough has no pooled target
        per_frame_missing = ~members[t].any(-1)
        for name in OBJECT_HEADS:
            per_frame[name][t, per_frame_missing] = IGNORE
    return Targets(tokens, per_frame, members, clip)


class AttributeHeads(nn.Module):
    """Linear heads on tower tokens (dense), on the max over each object's tokens (per object and
    frame), and on the pooled mean (per clip)."""

    def __init__(self, width: int):
        super().__init__()
        self.token = nn.ModuleDict({name: nn.Linear(width, len(c)) for name, c in TOKEN_HEADS.items()})
        self.object = nn.ModuleDict({name: nn.Linear(width, len(c)) for name, c in OBJECT_HEADS.items()})
        self.clip = nn.ModuleDict({name: nn.Linear(width, len(c)) for name, c in CLIP_HEADS.items()})


class AttributeLoss(nn.Module):
    """One forward: frames through the merging tower, heads on its tokens, the summed loss.

    Returns (sum over samples of each sample's mean head loss, per-head accuracies). A module so
    accelerate/DDP can wrap it, like `CaptionLoss`. `frames_per_clip` > 0 runs only that many of
    each clip's frames through the tower: frames of one clip are near-duplicates for what the heads
    learn, so more clips per step of the same cost learn faster.
    """

    throughput = "clips_per_s"

    def __init__(self, model, heads: AttributeHeads, frames_per_clip: int = 0):
        super().__init__()
        self.model, self.heads, self.frames_per_clip = model, heads, frames_per_clip

    def units(self, samples: list[AttributeSample]) -> int:
        """The loss is a mean over clips."""
        return len(samples)

    volume = units  # clips read, for the throughput in the log

    def _subsample(self, sample: AttributeSample) -> AttributeSample:
        """The clip's frames through the model's transform (temporal channels need all of them),
        then `frames_per_clip` of them drawn at random (torch's RNG: resumes draw the same)."""
        pixels = self.model.transform(sample.frames)  # (T, C, S, S)
        t = pixels.shape[0]
        if not 0 < self.frames_per_clip < t:
            return AttributeSample(pixels, sample.targets, sample.index)
        keep = torch.randperm(t)[: self.frames_per_clip].sort().values.numpy()
        targets = sample.targets
        return AttributeSample(pixels[keep], Targets(
            {k: v[keep] for k, v in targets.tokens.items()}, {k: v[keep] for k, v in targets.objects.items()},
            targets.members[keep], targets.clip), sample.index)

    def forward(self, samples: list[AttributeSample], token_kept_ratio: float) -> tuple[torch.Tensor, dict]:
        model = self.model
        samples = [self._subsample(s) for s in samples]
        pixels = torch.cat([s.frames for s in samples]).to(model.device, model.dtype)
        out = model.tower(pixels, token_kept_ratio, track_source=True)
        features, sizes = out.features.float(), out.sizes.float()  # (N, n, C), (N, n, 1)
        losses, accuracy = [], {}
        for name, head in self.heads.token.items():
            patches = torch.from_numpy(np.concatenate([s.targets.tokens[name] for s in samples])).to(features.device)
            labels = merged_labels(patches, out.source, features.shape[1], len(TOKEN_HEADS[name]))
            logits = head(features)
            if (labels != IGNORE).any():
                losses.append(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE))
                accuracy[name] = _accuracy(logits, labels)
        members = torch.from_numpy(np.concatenate([s.targets.members for s in samples])).to(features.device)
        touched = merged_members(members, out.source, features.shape[1])  # (N, O, n)
        pooled_objects = features[:, None].masked_fill(~touched[..., None], float("-inf")).amax(2)  # (N, O, C)
        for name, head in self.heads.object.items():
            labels = torch.from_numpy(np.concatenate([s.targets.objects[name] for s in samples])).to(features.device)
            if (labels != IGNORE).any():
                logits = head(torch.where(touched.any(-1, keepdim=True), pooled_objects, 0.0))
                losses.append(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE))
                accuracy[f"object_{name}"] = _accuracy(logits, labels)
        frames = [len(s.frames) for s in samples]
        pooled = ((features * sizes).sum(1) / sizes.sum(1))  # (N, C) one vector per frame
        pooled = torch.stack([chunk.mean(0) for chunk in pooled.split(frames)])  # (B, C) per clip
        for name, head in self.heads.clip.items():
            labels = torch.tensor([s.targets.clip[name] for s in samples], device=features.device)
            logits = head(pooled)
            losses.append(F.cross_entropy(logits, labels))
            accuracy[name] = _accuracy(logits, labels)
        return torch.stack(losses).sum() * len(samples), accuracy


def merged_labels(patches: torch.Tensor, source: torch.Tensor, tokens: int, classes: int) -> torch.Tensor:
    """(N, P) patch labels -> (N, tokens) labels of the merged tokens: the label most of a token's
    patches carry (IGNORE when most carry none). `source[i, p]` is patch p's output token."""
    n = patches.shape[0]
    slot = torch.where(patches == IGNORE, classes, patches)  # IGNORE gets its own slot
    counts = torch.zeros(n, tokens, classes + 1, device=patches.device)
    flat = (source * (classes + 1) + slot)  # (N, P) index into the flattened (tokens, classes + 1)
    counts.view(n, -1).scatter_add_(1, flat, torch.ones_like(flat, dtype=counts.dtype))
    winner = counts.argmax(-1)  # (N, tokens)
    return torch.where(winner == classes, torch.full_like(winner, IGNORE), winner)


def merged_members(members: torch.Tensor, source: torch.Tensor, tokens: int) -> torch.Tensor:
    """(N, O, P) patches each object touches -> (N, O, tokens): a merged token touches an object
    when any of its patches does."""
    n, o, _ = members.shape
    out = torch.zeros(n, o, tokens, dtype=torch.float32, device=members.device)
    out.scatter_reduce_(2, source[:, None].expand(-1, o, -1), members.float(), "amax")
    return out > 0


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    keep = labels != IGNORE
    return float((logits.argmax(-1)[keep] == labels[keep]).float().mean()) if keep.any() else float("nan")


class AttributeDataset(RecordDataset):
    """`aurora synth` records -> AttributeSamples; frames and targets are cached after the first
    read. Records without usable media or attributes are skipped with a warning and counted."""

    def __init__(self, records, num_frames: int, image_size: int, patch_size: int, media_root: str | None = None,
                 sampling: str = "uniform"):
        super().__init__(records)
        self.num_frames = num_frames
        self.image_size, self.patch_size = image_size, patch_size
        self.media_root, self.sampling = media_root, sampling
        self.cache: dict[int, AttributeSample] = {}

    def _build(self, index: int) -> AttributeSample:
        if index in self.cache:
            return self.cache[index]
        record = self.records[index]
        if not isinstance(record.get("attributes"), dict):
            raise ConfigError("record has no synth attributes (train this objective on `aurora synth` data)")
        found = media_path(record, self.media_root)
        if found is None or found[0] != "video":
            raise ConfigError("record has no video")
        clip = media.load_visual(found[1], num_frames=self.num_frames, sampling=self.sampling)
        if clip.array.shape[1:3] != (self.image_size, self.image_size):
            raise ConfigError(f"frames are {clip.array.shape[2]}x{clip.array.shape[1]}, the model reads "
                              f"{self.image_size}x{self.image_size}: generate the clips at that size")
        targets = synth_targets(record["attributes"], clip.indices, clip.total_frames, self.image_size, self.patch_size)
        sample = AttributeSample(clip.array, targets, index)
        self.cache[index] = sample
        return sample
