"""The bundled default model: small, safetensors only, and right about the shipped examples."""

import json
from pathlib import Path

import pytest

import aurora
from aurora.cli import main
from aurora.eval.synth_score import extract
from aurora.models import DEFAULT_MODEL

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("clip_*.mp4"))


def test_bundled_weights_are_small_safetensors():
    files = [p for p in DEFAULT_MODEL.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert weights and sum(p.stat().st_size for p in weights) <= 25 * 2**20


@pytest.fixture(scope="module")
def default_model():
    return aurora.load()


@pytest.mark.parametrize("clip", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_default_model_names_the_right_objects_colours_and_motions(default_model, clip):
    truth = json.loads(clip.with_suffix(".json").read_text())["attributes"]
    streamed = []
    reply = default_model.caption(str(clip), on_text=streamed.append)
    assert "".join(streamed) == reply.text and reply.text == reply.text.strip()  # no space before the first word
    read = extract(reply.text)
    said = {(o["kind"], o["colour"], o["motion"]) for o in read["objects"]}
    expected = {(o["kind"], o["colour"], o["motion"]) for o in truth["objects"]}
    assert said == expected, reply.text
    assert read["camera"] == truth["camera"], reply.text


def test_caption_command_uses_the_default_model(capsys):
    assert EXAMPLES, "examples/ must hold clips"
    code = main(["caption", str(EXAMPLES[0]), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["model"] == "aurora-default" and out["caption"]
