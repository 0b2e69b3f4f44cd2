"""`aurora eval synth`: scoring generated captions, resuming, sweep outputs."""

import json

import pytest

import aurora
from aurora.cli import main
from aurora.eval.synth_eval import evaluate
from aurora.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(num_clips=6, size=64, frames=8, seed=5, splits=(0, 0, 1), out=str(out)), progress=False)
    return out / "test.jsonl"


class Oracle:
    """Stands in for a model: answers each clip with its reference caption (or a wrong one)."""

    def __init__(self, model, split, wrong_ids=()):
        self.model, self.calls = model, 0
        records = [json.loads(line) for line in split.read_text().splitlines()]
        self.answers = {str(split.parent / r["video"]): r["captions"]["detailed"] for r in records}
        self.wrong = {str(split.parent / r["video"]) for r in records if r["id"] in wrong_ids}

    def __getattr__(self, name):
        return getattr(self.model, name)

    def caption_batch(self, paths, **kwargs):
        self.calls += len(paths)
        replies = self.model.caption_batch(paths, **{**kwargs, "max_new_tokens": 2})
        for path, reply in zip(paths, replies):
            reply.text = "The camera is static." if path in self.wrong else self.answers[path]
        return replies


def test_scores_resume_and_sweep_outputs(split, xtuner_ckpt, tmp_path):
    model = aurora.load(xtuner_ckpt)
    records = [json.loads(line) for line in split.read_text().splitlines()]
    wrong = {records[0]["id"]}
    first = Oracle(model, split, wrong)
    evaluate(first, split, tmp_path, [0.5], batch_size=4, limit=4, progress=False)
    assert first.calls == 4
    again = Oracle(model, split, wrong)
    summary = evaluate(again, split, tmp_path, [0.5, 1.0], batch_size=4, progress=False)
    assert again.calls == 2 + 6  # ratio 0.5 resumed (2 left), ratio 1.0 from scratch
    result = summary["results"]["0.5"]
    assert result["n"] == 6
    # five perfect captions and one that only gets the camera right (or not even that)
    assert result["overall"] < 1.0 and result["overall"] >= 5 / 6
    lines = [json.loads(line) for line in (tmp_path / "ratio_0.5.jsonl").read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(r["id"] for r in records)
    assert (tmp_path / "table.md").read_text().startswith("| ratio | tokens/frame | overall")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    assert summary["results"]["1"]["relative_to_best"] <= 1.0  # keys are ratios formatted with :g
    # the same scores split by how many objects a clip holds: only the wrong clip's group loses
    by_objects = result["by_objects"]
    counts = {r["id"]: len(r["attributes"]["objects"]) for r in records}
    assert sum(group["n"] for group in by_objects.values()) == 6
    assert {k: g["n"] for k, g in by_objects.items()} == {str(c): list(counts.values()).count(c) for c in set(counts.values())}
    wrong_group = str(counts[records[0]["id"]])
    assert by_objects[wrong_group]["overall"] < 1.0
    assert all(g["overall"] == 1.0 for k, g in by_objects.items() if k != wrong_group)
    assert f"| 0.5 | {wrong_group} | {by_objects[wrong_group]['n']} |" in (tmp_path / "table.md").read_text()


def test_eval_cli(split, xtuner_ckpt, tmp_path, capsys):
    code = main(["eval", "synth", "--model", str(xtuner_ckpt), "--data", str(split), "--out", str(tmp_path),
                 "--token-kept-ratio", "0.5", "--max-new-tokens", "4", "--limit", "2"])
    assert code == 0
    assert "| 0.5 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["results"]["0.5"]["n"] == 2
    code = main(["eval", "synth", "--model", str(xtuner_ckpt), "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)])
    assert code == 2 and "aurora synth" in capsys.readouterr().err
