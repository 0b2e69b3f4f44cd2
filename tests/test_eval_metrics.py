"""Caption metrics equal pycocoevalcap's own scores (Java required: a missing Java fails, never skips)."""

import json

import pytest

from aurora.errors import ConfigError
from aurora.eval.metrics import caption_scores
from tests.eval_fixtures.helpers import FIXTURES, Scripted, evaluate, make_media, video_name

def pycocoevalcap_scores(references, predictions):
    """The metrics exactly as pycocoevalcap's own example computes them."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in references.items()})
    res = tokenizer.tokenize({k: [{"caption": predictions[k]}] for k in references})
    return {"BLEU-4": Bleu(4).compute_score(gts, res, verbose=0)[0][3], "METEOR": Meteor().compute_score(gts, res)[0],
            "ROUGE-L": Rouge().compute_score(gts, res)[0], "CIDEr-D": Cider().compute_score(gts, res)[0]}


@pytest.fixture(scope="module")
def corpus():
    data = json.loads((FIXTURES / "captions/captions.json").read_text())
    references = {d["id"]: d["captions"] for d in data}
    predictions = {"cap_a": "A red ball rolls left.", "cap_b": "Two dogs run on the grass.", "cap_c": "A city at night."}
    return references, predictions, pycocoevalcap_scores(references, predictions)


def test_caption_metrics_benchmark_equals_pycocoevalcap(corpus, tmp_path):
    references, predictions, expected = corpus
    media = make_media(tmp_path / "media")
    summary = evaluate(["caption-metrics", "--data", str(FIXTURES / "captions/captions.json"),
                        "--video-dir", str(media / "captions"), "--out", str(tmp_path / "out")],
                       Scripted(lambda q: predictions[video_name(q)[:-4]]))
    for name, value in expected.items():
        assert summary["results"]["metrics"][name] == pytest.approx(value, abs=1e-12), name
    assert 0 < expected["CIDEr-D"] and expected["BLEU-4"] > 0 and expected["METEOR"] > 0
    assert "| BLEU-4 | METEOR | ROUGE-L | CIDEr-D | items |" in (tmp_path / "out/table.md").read_text()


def test_cider_is_corpus_level():
    """Document frequencies come from the whole split: an item's CIDEr-D changes with the others."""
    from pycocoevalcap.cider.cider import Cider

    gts = {"a": ["a red ball rolls left"], "b": ["a red dog runs in a park"], "c": ["two dogs run in a park"]}
    res = {"a": ["a red ball rolls left"], "b": ["a dog runs in a park"], "c": ["two dogs run"]}
    whole = Cider().compute_score(gts, res)[1][1]
    alone = Cider().compute_score({"a": gts["a"], "b": gts["b"]}, {"a": res["a"], "b": res["b"]})[1][1]
    assert whole != pytest.approx(alone)


def test_missing_java_is_an_error(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="default-jre-headless"):
        caption_scores({"a": ["x"]}, {"a": "x"})
