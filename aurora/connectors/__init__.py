"""Connectors map vision features to the language model's embedding space, and may reduce them
after the encoder (pooling; later Q-Former, resampler). One small file each; this registry maps a
connector config's `model_type` to its class, so a checkpoint's connector is built from its
config.json. Each class has `to_config()` / `from_config(config)` and maps (T, n, C) frame
features to (B, m, D) token blocks: B = T (a block per frame) or 1 (one per video).
"""

from __future__ import annotations

import importlib

from aurora.errors import CheckpointError

CONNECTORS = {
    "projector": "aurora.connectors.projector:MLPProjector",  # AuroraCap's xtuner name
    "pool": "aurora.connectors.pool:PooledConnector",
    "mm_connector": "aurora.connectors.resampler:PerceiverConnector",  # Apollo's projection + Perceiver resampler
}


def connector_class(model_type: str):
    if model_type not in CONNECTORS:
        raise CheckpointError(f"unknown connector model_type {model_type!r}: Aurora has {', '.join(CONNECTORS)}")
    module, name = CONNECTORS[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def build_connector(config: dict):
    """A connector (random weights) from its config; a one-line error for an incomplete config."""
    cls = connector_class(config.get("model_type"))
    try:
        return cls.from_config(config)
    except KeyError as e:
        raise CheckpointError(f"the {config.get('model_type')} connector config lacks the field {e.args[0]!r}") from None
