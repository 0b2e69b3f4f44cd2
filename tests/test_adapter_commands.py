"""--adapter reaches every command that loads a model: caption-batch (rows record it, resume checks
it), serve and the GUI load the base with the adapter applied, as aurora.load(..., adapter=) does."""

from __future__ import annotations

import argparse

import pytest
import torch

import aurora
from aurora.adapters.lora import apply_lora, save_lora
from aurora.batch.job import caption_dataset
from aurora.errors import ConfigError
from aurora.testing.media import make_frames, write_video

FAST = dict(num_frames=4, max_new_tokens=12)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA on the bundled model's LM with random nonzero B (as after training): it changes captions."""
    base = aurora.load(None, device="cpu")
    lm = apply_lora(base.language_model, rank=4, alpha=8, targets=("q_proj", "v_proj"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in lm.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    directory = tmp_path_factory.mktemp("adapter")
    save_lora(lm, directory)
    return directory


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter-clips")
    return [str(write_video(root / f"clip_{i}.mp4", make_frames(12, seed=i))) for i in range(3)]


def test_caption_batch_applies_the_adapter_and_resume_checks_it(adapter, clips, tmp_path):
    out = tmp_path / "captions.jsonl"
    rows = caption_dataset(clips, out, adapter=adapter, progress=False, device="cpu", **FAST)
    with_adapter = aurora.load(None, device="cpu", adapter=adapter)
    expected = [with_adapter.caption(path, **FAST).text for path in clips]
    assert [row["caption"] for row in rows] == expected
    base = aurora.load(None, device="cpu")
    assert expected != [base.caption(path, **FAST).text for path in clips]  # the adapter does change the captions
    assert rows[0]["settings"]["adapter"] == str(adapter) and rows[0]["settings"]["lora_alpha"] is None
    with pytest.raises(ConfigError, match="settings"):
        caption_dataset(clips, out, resume=True, progress=False, device="cpu", **FAST)  # the same job without it


def test_caption_batch_flags_reach_the_job(adapter, monkeypatch):
    from aurora import cli

    seen = {}
    monkeypatch.setattr("aurora.batch.job.caption_dataset", lambda *a, **k: seen.update(k) or [])
    assert cli.main(["caption-batch", "in.txt", "--out", "o.jsonl", "--adapter", str(adapter), "--lora-alpha", "16"]) == 0
    assert (seen["adapter"], seen["lora_alpha"], seen["trust_remote_code"]) == (str(adapter), 16.0, False)


def test_serve_and_gui_load_the_adapter(adapter, monkeypatch):
    from aurora.serve import cli

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    served = {}
    monkeypatch.setattr("aurora.serve.app.create_app", lambda model, settings: served.setdefault("model", model))
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: None)
    args = parser.parse_args(["serve", "--device", "cpu", "--adapter", str(adapter), "--lora-alpha", "16"])
    assert args.run(args) == 0

    expected = aurora.load(None, device="cpu", adapter=adapter, lora_alpha=16)
    ids = torch.tensor([[1, 5, 9, 17]])
    with torch.no_grad():
        assert torch.equal(served["model"].language_model(input_ids=ids).logits,
                           expected.language_model(input_ids=ids).logits)

    from aurora.serve.gui import ModelCache

    args = parser.parse_args(["gui", "--device", "cpu", "--adapter", str(adapter)])
    monkeypatch.setattr("aurora.serve.gui.launch_gui", lambda model, host, port, **kw: served.setdefault("gui", kw))
    assert args.run(args) == 0
    cache = ModelCache(None, None, **served["gui"])
    assert hasattr(cache.get(str(aurora.models.DEFAULT_MODEL)).language_model, "peft_config")


def test_a_results_file_from_before_adapters_resumes(tmp_path):
    import json

    from aurora.batch.results import open_results

    old = {"model": "m", "prompt": "p", "num_frames": 4, "fps": None, "token_kept_ratio": 0.2, "max_new_tokens": 12}
    out = tmp_path / "old.jsonl"
    out.write_text(json.dumps({"path": "a.mp4", "caption": "c", "settings": old}) + "\n")
    writer = open_results(out, resume=True, settings={**old, "adapter": None, "lora_alpha": None})
    assert [row["path"] for row in writer.rows] == ["a.mp4"]
    writer.close(True)
    with pytest.raises(ConfigError, match="settings"):
        open_results(out, resume=True, settings={**old, "adapter": "lora", "lora_alpha": None})
