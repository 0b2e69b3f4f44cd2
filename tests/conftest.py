"""Shared fixtures: tiny checkpoints in both AuroraCap layouts, built once per session."""

import pytest

from aurora.testing.checkpoints import save_tiny


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Lazily built tiny checkpoints keyed by (layout, lm)."""
    root = tmp_path_factory.mktemp("checkpoints")
    built = {}

    def get(layout="xtuner", lm="llama"):
        key = (layout, lm)
        if key not in built:
            vision = "clip" if lm == "llama" else "siglip"
            built[key] = save_tiny(root / f"{layout}-{lm}", layout=layout, lm=lm, vision=vision)
        return built[key]

    return get


@pytest.fixture(scope="session")
def xtuner_ckpt(checkpoints):
    return checkpoints("xtuner", "llama")


@pytest.fixture(scope="session")
def hf_ckpt(checkpoints):
    return checkpoints("hf", "llama")


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Small videos in every evaluation fixture's published layout."""
    from tests.eval_fixtures.helpers import make_media

    return make_media(tmp_path_factory.mktemp("eval-media"))


@pytest.fixture(scope="session")
def server():
    """A deterministic rule-based judge over HTTP on 127.0.0.1."""
    from tests.eval_fixtures.judge_server import JudgeServer

    with JudgeServer() as s:
        yield s
