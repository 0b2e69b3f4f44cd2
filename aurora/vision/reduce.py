"""Visual token reduction: what `token_kept_ratio` means, and the reducer section of a preset.

`token_kept_ratio` is the share of a visual's tokens that reach the language model, whichever
reducer provides it: ToMe inside the encoder (`aurora.vision.tower` over the pure functions of
`aurora.vision.merge`; AuroraCap's rule r = int(patches * (1 - ratio) / layers) per layer), or a
reducer after the encoder (pooling, resampler: `aurora.connectors`). It is range-checked here,
once, for every entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

from aurora.errors import ConfigError
from aurora.vision.merge import SCHEDULES

METHODS = ("tome",)  # in-encoder merging; after-encoder reducers are connectors


def check_ratio(ratio: float) -> float:
    """A token kept ratio in (0, 1], else a one-line ConfigError."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"token_kept_ratio must be in (0, 1], got {ratio}")
    return float(ratio)


@dataclass
class ReducerSettings:
    token_kept_ratio: float = 0.8  # the inference default (AuroraCap's script)
    method: str = "tome"
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
