"""The lmms-eval plugin, tested against a stand-in for lmms-eval's `lmms` base class (lmms-eval
itself is not a test dependency)."""

import importlib
import math
import sys
import types
from dataclasses import dataclass

import pytest
import torch

import aurora
from aurora.eval import lmms_plugin
from tests.eval_fixtures.helpers import make_media


@pytest.fixture(scope="module")
def model(xtuner_ckpt):
    return aurora.load(xtuner_ckpt)


@pytest.fixture()
def plugin(monkeypatch):
    """aurora.eval.lmms_plugin imported with a stub lmms-eval installed."""

    class lmms:  # what the plugin relies on: __init__ sets rank / world size, task_dict
        def __init__(self):
            self._rank, self._world_size, self.task_dict = 0, 1, {}

    @dataclass(frozen=True)
    class ModelManifest:
        model_id: str
        simple_class_path: str | None = None
        chat_class_path: str | None = None

    stubs = {"lmms_eval": types.ModuleType("lmms_eval"), "lmms_eval.api": types.ModuleType("lmms_eval.api"),
             "lmms_eval.api.model": types.ModuleType("lmms_eval.api.model"),
             "lmms_eval.api.instance": types.ModuleType("lmms_eval.api.instance"),  # no GenerationResult
             "lmms_eval.models": types.ModuleType("lmms_eval.models"),
             "lmms_eval.models.registry_v2": types.ModuleType("lmms_eval.models.registry_v2")}
    stubs["lmms_eval.api.model"].lmms = lmms
    stubs["lmms_eval.models.registry_v2"].ModelManifest = ModelManifest
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield importlib.reload(lmms_plugin)
    monkeypatch.undo()
    importlib.reload(lmms_plugin)


@dataclass
class Instance:  # lmms-eval's request: only .args is used
    args: tuple


def test_generation_options_from_lmms_kwargs():
    options = lmms_plugin.options_from({"until": "ASSISTANT:", "max_new_tokens": 64, "temperature": 0.7,
                                        "do_sample": False}, None)
    assert options.stop == ("ASSISTANT:",) and options.max_new_tokens == 64 and options.temperature == 0.0
    assert lmms_plugin.options_from({"temperature": 0.5, "do_sample": True, "top_p": 0.9}, 8).max_new_tokens == 8


def test_plugin_generates_and_scores(plugin, xtuner_ckpt, model, tmp_path):
    media = make_media(tmp_path)
    assert plugin.manifests()[0].simple_class_path == "aurora.eval.lmms_plugin.AuroraLMMS"
    lm = plugin.AuroraLMMS(pretrained=str(xtuner_ckpt), num_frames=2, token_kept_ratio=0.5, batch_size=2,
                           device="cuda", dtype="float32")  # no CUDA here: falls back to auto
    assert lm.batch_size == 2 and (lm._rank, lm._world_size) == (0, 1)
    docs = [{"video": str(media / "videoqa/clip_a.mp4"), "q": "What is shown?"},
            {"video": str(media / "videoqa/clip_b.mp4"), "q": "What moves?"},
            {"video": str(media / "vdc/vid_a.mp4"), "q": "Describe it."}]
    lm.task_dict = {"toy": {"test": docs}}
    to_visual = lambda doc: [doc["video"]]
    requests = [Instance((d["q"], {"max_new_tokens": 3, "until": ["\n"]}, to_visual, i, "toy", "test"))
                for i, d in enumerate(docs)]
    texts = lm.generate_until(requests)
    expected = [r.text for r in model.respond_batch([plugin.messages_for([d["video"]], d["q"]) for d in docs],
                                                     2, None, 0.5, plugin.options_from({"max_new_tokens": 3,
                                                                                         "until": ["\n"]}, None))]
    assert texts == expected

    scores = lm.loglikelihood([Instance((d["q"], " yes", to_visual, i, "toy", "test")) for i, d in enumerate(docs)])
    assert len(scores) == 3 and all(math.isfinite(lp) and lp < 0 and isinstance(g, bool) for lp, g in scores)
    with pytest.raises(NotImplementedError):
        lm.generate_until_multi_round([])


def test_loglikelihood_matches_step_by_step_scoring(model, tmp_path):
    media = make_media(tmp_path)
    visuals, context, continuation = [str(media / "videoqa/clip_a.mp4")], "What is shown?", " a red ball"
    lp, greedy = lmms_plugin.loglikelihood(model, visuals, context, continuation, 2, 0.5)
    # the same quantity one token at a time: the prompt, the answer opening, then each continuation token
    embeds, _ = model.prepare(lmms_plugin.messages_for(visuals, context), 2, None, 0.5)  # (1, L, D)
    tokenizer, embed = model.tokenizer, model.language_model.get_input_embeddings()
    opening = model.template.answer.split("{content}")[0]
    head = tokenizer.encode(opening, add_special_tokens=False)
    ids = tokenizer.encode(opening + continuation, add_special_tokens=False)[len(head):]
    total, argmax_all = 0.0, True
    with torch.inference_mode():
        for k in range(len(ids)):
            extra = embed(torch.tensor(head + ids[:k]))[None]
            logits = model.language_model(inputs_embeds=torch.cat([embeds, extra], dim=1)).logits[0, -1].float()
            total += float(torch.log_softmax(logits, dim=-1)[ids[k]])
            argmax_all &= int(logits.argmax()) == ids[k]
    assert lp == pytest.approx(total, abs=1e-4) and greedy == argmax_all and lp < 0
