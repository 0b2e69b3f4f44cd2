"""Visual token reduction: what `token_kept_ratio` means, and the reducer section of a preset.

`token_kept_ratio` is the share of a visual's tokens that reach the language model, whichever
reducer provides it: ToMe inside the encoder (`aurora.vision.tower` over the pure functions of
`aurora.vision.merge`; AuroraCap's rule r = int(patches * (1 - ratio) / layers) per layer), or a
reducer after the encoder (pooling, resampler: `aurora.connectors`), or merging across time after
the encoder (`aurora.vision.temporal.merge_across_time`), or skipping before the encoder the patches
that repeat the previous frame (`aurora.vision.reuse`). It is range-checked here, once, for every
entry point.

The reducer `method` says which: "tome" (per frame, in the encoder), "temporal" (the encoder runs
whole, then tokens alike from frame to frame merge), or "both" (ToMe, then merging across time
takes what remains to the ratio: `split_ratio`), or "reuse" (a video's encoder computes frame 0 and
only the ratio's share of later patches that changed most, the rest reuse their previous frame's
states: `reuse_budget`; then the tokens go down to the ratio, merged across time for a composed
model, the most-changed kept for a native family). Whichever it
is, the ratio is the total share of the visual's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from aurora.errors import ConfigError
from aurora.vision.merge import SCHEDULES

MERGES = ("tome", "temporal", "both")  # in-encoder merging, merging across time, or both
METHODS = (*MERGES, "reuse")  # ... or skipping repeated patches before the encoder


TOME_FLOOR = 0.1  # the lowest ratio "both" asks of ToMe (AuroraCap's lowest; the default model trains at 0.1-0.4)


def split_ratio(method: str, ratio: float) -> tuple[float, float | None]:
    """(the encoder's ToMe ratio, the total share kept after merging across time, None for no
    temporal step) for a reducer method at a total ratio.

    "both" asks ToMe for the ratio, but not below TOME_FLOOR, and merging across time takes the
    tokens that remain to exactly the ratio: ToMe keeps each frame's own detail where it can (and
    speeds the encoder), merging across time removes what repeats from frame to frame. (Giving ToMe
    sqrt(ratio) instead was worse on the long synthetic split: 71.6% against 76.9% at 5%, 24 clips.)
    """
    if method not in MERGES:
        raise ConfigError(f"reduction must be one of {MERGES} here, got {method!r}")
    if method == "tome" or ratio >= 1:
        return ratio, None
    if method == "temporal":
        return 1.0, ratio
    return max(ratio, TOME_FLOOR), ratio


def reuse_budget(method: str, ratio: float) -> float | None:
    """The share of a video's later patches its encoder computes under "reuse" (the ratio itself:
    the encoder computes at least as many changed places as reach the language model), or None
    when the method is another or nothing is reduced."""
    return ratio if method == "reuse" and ratio < 1 else None


def check_ratio(ratio: float) -> float:
    """A token kept ratio in (0, 1], else a one-line ConfigError."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"token_kept_ratio must be in (0, 1], got {ratio}")
    return float(ratio)


@dataclass
class ReducerSettings:
    token_kept_ratio: float = 0.8  # the inference default (AuroraCap's script)
    method: str = "tome"  # one of METHODS: "tome", "temporal", "both"
    merge_schedule: str = "constant"  # AuroraCap's; "decreasing" front-loads merging (faster tower)
    proportional_attention: bool = False  # AuroraCap's term cancels in the softmax: off for parity

    def __post_init__(self):
        try:
            check_ratio(self.token_kept_ratio)
        except ConfigError as e:
            raise ConfigError(f"invalid preset: {e}") from None
        if self.method not in METHODS:
            raise ConfigError(f"invalid preset: reducer method must be one of {METHODS}")
        if self.merge_schedule not in SCHEDULES:
            raise ConfigError(f"invalid preset: merge_schedule must be one of {SCHEDULES}")
