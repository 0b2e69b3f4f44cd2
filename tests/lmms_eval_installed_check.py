"""The lmms-eval plugin against a real lmms-eval install, run by hand inside an lmms-eval environment
(`python -m pytest tests/lmms_eval_installed_check.py`; README "Evaluation" has an install that works next to a
CPU torch; lmms-eval's pins conflict with the suite's, so pytest does not collect this file by default): lmms-eval's own registry
finds `aurora` through the entry point, and its Instance objects go through generate_until."""

import pytest

lmms_models = pytest.importorskip("lmms_eval.models")
from lmms_eval.api.instance import Instance  # noqa: E402

from tests.eval_fixtures.helpers import make_media  # noqa: E402


def test_lmms_eval_finds_and_runs_the_aurora_plugin(xtuner_ckpt, tmp_path):
    cls = lmms_models.get_model("aurora")
    assert cls.__name__ == "AuroraLMMS"
    lm = cls(pretrained=str(xtuner_ckpt), num_frames=2, token_kept_ratio=0.5, batch_size=2, device="cpu")
    media = make_media(tmp_path)
    docs = [{"video": str(media / "videoqa/clip_a.mp4"), "q": "What is shown?"},
            {"video": str(media / "videoqa/clip_b.mp4"), "q": "What moves?"}]
    lm.task_dict = {"toy": {"test": docs}}
    requests = [Instance(request_type="generate_until", doc=d, idx=0, metadata={"task": "toy", "doc_id": i,
                                                                             "repeats": 1},
                         arguments=(d["q"], {"max_new_tokens": 3, "until": ["\n"]}, lambda doc: [doc["video"]], i,
                                    "toy", "test"))
                for i, d in enumerate(docs)]
    texts = lm.generate_until(requests)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
