"""Fuzzing the media path with a generated corpus (truncations, byte flips, wrong containers,
audio-only, zero frames, special files): every file ends in a real caption or a one-line
refusal (an AuroraError, which the CLI prints on one line with exit code 2), never another
exception. A fast subset runs here in-process through the model's media stages (decode at the
model's size, preprocess), captioning only a few; the full corpus, each file captioned with its time
and peak memory, is `python benchmarks/media_fuzz.py`."""

from __future__ import annotations

import pytest
import torch

import aurora
from aurora.errors import AuroraError
from aurora.testing.hostile_media import fuzz_corpus


@pytest.fixture(scope="module")
def model():
    return aurora.load()  # the bundled 7 MB captioner: what `aurora caption` runs


@pytest.mark.timeout(300)
def test_fast_fuzz_subset_captions_or_refuses_in_one_line(model, tmp_path):
    cases = fuzz_corpus(str(tmp_path), seed=7, flips=2, cuts=2)
    outcomes = {}
    for case in cases:
        try:
            frames = model.load_frames(case.path)  # what caption() runs first, at the model's size
            pixels = model.transform(frames.array)
        except AuroraError as e:
            message = str(e)
            assert message and "\n" not in message, (case.name, message)
            outcomes[case.name] = "refused"
        else:
            assert torch.isfinite(pixels).all() and pixels.shape[-1] == model.preset.vision.image_size, case.name
            outcomes[case.name] = "ok"
        if case.expect != "either":
            assert outcomes[case.name] == case.expect, (case.name, outcomes[case.name])
    decodable = [c for c in cases if outcomes[c.name] == "ok"][:4]
    for case in decodable:  # the rest of the pipeline on a few of them: a real caption
        assert model.caption(case.path, max_new_tokens=4).text.strip(), case.name
    # the corpus is not all refusals: intact sources and wrong-extension files still caption
    assert outcomes["src.mp4"] == outcomes["mp4_named_mkv.mkv"] == "ok"
    assert list(outcomes.values()).count("refused") >= 10
