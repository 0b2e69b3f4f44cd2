"""Training: answer-only labels, a few steps that lower the loss, exact resume, bad records."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aurora.cli import main
from aurora.errors import ConfigError
from aurora.prompts import get_template
from aurora.testing.media import write_text_file, write_video
from aurora.train import load_config, train
from aurora.train.batch import loss_scale, loss_units, token_loss_sum
from aurora.train.data import IGNORE, tokenize
from aurora.train.loop import DataOrder
from aurora.train.scratch import train_tokenizer

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220)}
TINY = dict(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2, vision_mlp=64,
            lm_hidden=32, lm_layers=2, lm_heads=2, lm_mlp=64, vocab_size=300, num_frames=4, max_new_tokens=16)


def clip(colour, direction, frames=8, size=32):
    array = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        x = 4 + t * 2 if direction == "right" else size - 12 - t * 2
        array[t, 12:20, x : x + 8] = COLOURS[colour]
    return array


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    records = []
    for i, (colour, direction) in enumerate([(c, d) for c in COLOURS for d in ("left", "right")]):
        write_video(root / f"{i}.mp4", clip(colour, direction), fps=8)
        answer = f"A {colour} square moves {direction}."
        records.append({"video": f"{i}.mp4", "conversations": [
            {"from": "human", "value": "<video>\nDescribe the video in detail."}, {"from": "gpt", "value": answer}]})
    write_text_file(root / "corrupt.mp4")
    bad = [
        {"video": "missing.mp4", "conversations": records[0]["conversations"]},
        {"video": "corrupt.mp4", "conversations": records[0]["conversations"]},
        {"video": "0.mp4", "conversations": []},
    ]
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records + bad))
    return path


def config(dataset, out, **overrides):
    settings = dict(data=str(dataset), output_dir=str(out), scratch=TINY, train_parts=["tower", "connector", "language_model"],
                    token_kept_ratio=0.5, num_frames=4, batch_size=3, grad_accum=2, lr=3e-3, warmup_steps=2,
                    max_steps=12, save_every=4, log_every=2, seed=0)
    return load_config(**{**settings, **overrides})


def test_labels_cover_only_the_answer_and_its_end_marker():
    tokenizer = train_tokenizer(["USER: describe ASSISTANT: a red square moves left"] * 4, 300)
    template = get_template("vicuna")
    turns = [("user", "Describe."), ("assistant", "a red square")]
    segments, labels = tokenize(turns, 2, template, tokenizer, 512)
    assert len(segments) == 3  # text, frame, text, frame, text
    ids = [i for s in segments for i in s]
    kept = [label for lab in labels for label in lab if label != IGNORE]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(kept) == " a red square</s>"
    assert kept[-1] == tokenizer.eos_token_id
    context = [i for i, label in zip(ids, [x for lab in labels for x in lab]) if label == IGNORE]
    assert tokenizer.decode(context, skip_special_tokens=True).endswith("Describe. ASSISTANT:")


def test_numbered_frames_are_laid_out_in_training_as_at_inference(dataset):
    """A preset with layout "numbered_frames" trains on the prompt it answers with: each frame's
    number before its block, one block per frame."""
    from aurora.train.data import VideoTextDataset, read_records

    tokenizer = train_tokenizer(["USER: describe 1: 2: 3: 4: ASSISTANT: a red square moves left"] * 4, 300)
    template = get_template("vicuna")
    segments, _ = tokenize([("user", "Describe."), ("assistant", "a red square")], 3, template, tokenizer, 512,
                           "numbered_frames")
    assert [tokenizer.decode(s) for s in segments[1:3]] == [" 2: ", " 3: "]
    items = VideoTextDataset(read_records(dataset), tokenizer, template, num_frames=4, media_root=str(dataset.parent),
                             layout="numbered_frames")
    sample = items.get(0)
    assert len(sample.segments) == len(sample.frames) + 1 == 5 and tokenizer.decode(sample.segments[3]).strip() == "4:"


def test_loss_numerics():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE, 1, 2, IGNORE, IGNORE], [IGNORE, IGNORE, 3, 4, 5]])
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(token_loss_sum(logits, labels), expected)
    # two micro-batches of 2 and 3 tokens, scaled by 1/5, give the mean over the 5 tokens
    assert loss_scale(5) * (2 + 3) == pytest.approx(1.0)
    assert loss_scale(5, world_size=2) == pytest.approx(0.4)


def test_per_sample_loss_weighs_a_short_answer_like_a_long_one():
    logits = torch.randn(2, 6, 7)
    labels = torch.tensor([[IGNORE, 1, IGNORE, IGNORE, IGNORE, IGNORE], [IGNORE, 2, 3, 4, 5, 6]])
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1),
                                           ignore_index=IGNORE, reduction="none").view(2, 5)
    expected = ce[0, 0] + ce[1].mean()  # 1 token and 5 tokens, each answer averaged on its own
    torch.testing.assert_close(token_loss_sum(logits, labels, per_sample=True), expected)
    # a row without answer tokens adds nothing (and no NaN)
    empty = torch.full((1, 6), IGNORE)
    assert float(token_loss_sum(logits[:1], empty, per_sample=True)) == 0.0

    class S:  # Sample-shaped: label segments
        def __init__(self, *labels):
            self.labels = labels

    samples = [S([IGNORE, 1], [2]), S([IGNORE]), S([5, 6, 7])]
    assert loss_units(samples) == 5 and loss_units(samples, per_sample=True) == 2


def test_per_sample_normalisation_trains_and_accumulates_like_one_batch(dataset, tmp_path):
    """grad_accum=2 x batch 3 and grad_accum=1 x batch 6 see the same samples: same weights after a step."""
    runs = {}
    for name, accum, batch in (("split", 2, 3), ("whole", 1, 6)):
        final = train(config(dataset, tmp_path / name, loss_normalisation="sample", grad_accum=accum, batch_size=batch,
                             max_steps=1, warmup_steps=0, save_every=1), progress=False)
        runs[name] = load_file(final.parent / "checkpoints" / "step_00000001" / "weights.safetensors")
    # Adam's first step is lr * g / (|g| + eps): where a gradient is ~0, summation-order noise from
    # thread scheduling can flip its sign, so allow a handful of such elements, not a pattern
    differ = sum(int((~torch.isclose(runs["split"][k], runs["whole"][k], rtol=1e-4, atol=1e-6)).sum()) for k in runs["split"])
    total = sum(v.numel() for v in runs["split"].values())
    assert differ <= 1e-4 * total, f"{differ} of {total} weights differ"
    with pytest.raises(Exception, match="loss_normalisation must be one of"):
        config(dataset, tmp_path / "bad", loss_normalisation="batch")


def test_data_order_is_a_permutation_per_epoch_and_reproducible():
    order = DataOrder(7, seed=3)
    first, second = [order[i] for i in range(7)], [order[i] for i in range(7, 14)]
    assert sorted(first) == sorted(second) == list(range(7)) and first != second
    assert [DataOrder(7, seed=3)[i] for i in range(14)] == first + second


def test_training_lowers_the_loss_skips_bad_records_and_exports(dataset, tmp_path, caplog):
    final = train(config(dataset, tmp_path / "run", lr=2e-2, max_steps=24, save_every=12), progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(2, 25, 2))
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_records"] == 3
    assert "skipping record" in caplog.text
    import aurora

    model = aurora.load(final)
    assert model.preset.vision.temporal_input == "difference" and model.tower.config.num_channels == 6


def test_killed_run_resumes_to_the_same_weights(dataset, tmp_path, monkeypatch):
    reference = train(config(dataset, tmp_path / "straight"), progress=False)
    from aurora.train import batch

    calls = {"n": 0}
    forward = batch.CaptionLoss.forward

    def dies_after_step_6(self, samples, ratio):  # 2 micro-batches per step: die inside step 7
        calls["n"] += 1
        if calls["n"] > 13:
            raise KeyboardInterrupt
        return forward(self, samples, ratio)

    monkeypatch.setattr(batch.CaptionLoss, "forward", dies_after_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(config(dataset, tmp_path / "killed"), progress=False)
    monkeypatch.setattr(batch.CaptionLoss, "forward", forward)
    checkpoints = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_00000004"]  # step 6 had no checkpoint yet; 8 never came
    resumed = train(config(dataset, tmp_path / "killed"), resume=True, progress=False)
    a = load_file(reference.parent / "checkpoints" / "step_00000012" / "weights.safetensors")
    b = load_file(resumed.parent / "checkpoints" / "step_00000012" / "weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # no duplicated log lines after resume


def test_train_cli_config_file_and_flag_overrides(dataset, tmp_path, capsys):
    yaml_path = tmp_path / "cfg.yaml"
    yaml_path.write_text(f"data: {dataset}\nscratch: {json.dumps(TINY)}\ntrain_parts: [connector]\nmax_steps: 100\n"
                         "batch_size: 2\nnum_frames: 4\nlog_every: 1\n")
    code = main(["train", "--config", str(yaml_path), "--max-steps", "2", "--output-dir", str(tmp_path / "cli"),
                 "--train-parts", "connector,tower"])
    assert code == 0, capsys.readouterr().err
    saved = (tmp_path / "cli" / "config.yaml").read_text()
    assert "max_steps: 2" in saved and "- tower" in saved
    code = main(["train", "--config", str(yaml_path), "--max-steps", "1", "--output-dir", str(tmp_path / "cli2"),
                 "--loss-normalisation", "sample"])
    assert code == 0 and "loss_normalisation: sample" in (tmp_path / "cli2" / "config.yaml").read_text()
    code = main(["train", "--config", str(yaml_path), "--output-dir", str(tmp_path / "cli")])
    assert code == 2 and "--resume" in capsys.readouterr().err  # refuses to overwrite checkpoints
    code = main(["train", "--config", str(yaml_path), "--train-parts", "wings"])
    assert code == 2 and "unknown train_parts" in capsys.readouterr().err


def test_step_ratio_draws_in_range_with_a_share_of_unmerged_steps(tmp_path, dataset):
    from aurora.train.loop import step_ratio

    cfg = config(dataset, tmp_path, token_kept_ratio=0.1, token_kept_ratio_max=0.4, unmerged_share=0.1)
    ratios = np.array([step_ratio(cfg, step) for step in range(2000)])
    merged = ratios[ratios < 1.0]
    assert 0.07 < (ratios == 1.0).mean() < 0.13
    assert merged.min() >= 0.1 and merged.max() <= 0.4 and merged.std() > 0.05
    assert [step_ratio(cfg, s) for s in range(50)] == list(ratios[:50])  # resumes draw the same
    assert {step_ratio(config(dataset, tmp_path, token_kept_ratio=0.3), s) for s in range(50)} == {0.3}
    with pytest.raises(Exception, match="unmerged_share"):
        config(dataset, tmp_path, unmerged_share=1.5)


def test_a_share_of_steps_merges_across_time_and_trains(tmp_path, dataset):
    from aurora.train.loop import step_reduction

    cfg = config(dataset, tmp_path, temporal_share=0.25, temporal_ratio=0.05, temporal_ratio_max=0.2)
    steps = [step_reduction(cfg, step) for step in range(2000)]
    across = np.array([ratio for method, ratio in steps if method == "both"])
    assert 0.21 < len(across) / len(steps) < 0.29 and {m for m, _ in steps} == {"both", "tome"}
    assert across.min() >= 0.05 and across.max() <= 0.2 and across.std() > 0.02
    assert {r for m, r in steps if m == "tome"} == {0.5}  # the other steps as configured without it
    with pytest.raises(Exception, match="temporal_ratio_max"):
        config(dataset, tmp_path, temporal_ratio=0.3, temporal_ratio_max=0.2)
    final = train(config(dataset, tmp_path / "run", temporal_share=1.0, temporal_ratio=0.1, lr=2e-2,
                         max_steps=24, save_every=12), progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]  # it learns from merged-across-time tokens
    import aurora

    assert aurora.load(final).preset.reducer.method == "tome"  # the preset's method is put back


def test_a_share_of_steps_reuses_repeated_patches_and_trains(tmp_path, dataset, monkeypatch):
    from aurora.models.video_llm import VideoLLM
    from aurora.train.loop import step_reduction

    cfg = config(dataset, tmp_path, temporal_share=0.25, reuse_share=0.25, temporal_ratio=0.05, temporal_ratio_max=0.2)
    steps = [step_reduction(cfg, step) for step in range(2000)]
    reused = np.array([ratio for method, ratio in steps if method == "reuse"])
    assert 0.21 < len(reused) / len(steps) < 0.29 and {m for m, _ in steps} == {"both", "reuse", "tome"}
    assert reused.min() >= 0.05 and reused.max() <= 0.2 and reused.std() > 0.02
    # with reuse_share 0 the steps are drawn exactly as before it existed
    assert [step_reduction(config(dataset, tmp_path, temporal_share=0.25, temporal_ratio=0.05,
                                  temporal_ratio_max=0.2), s) for s in range(50)] == \
        [(m, r) if m != "reuse" else ("tome", 0.5) for m, r in steps[:50]]
    with pytest.raises(Exception, match="reuse_share must be in"):
        config(dataset, tmp_path, temporal_share=0.75, reuse_share=0.5)
    calls = []
    reused_encode = VideoLLM._encode_reused
    monkeypatch.setattr(VideoLLM, "_encode_reused", lambda self, *a: calls.append(a[1:]) or reused_encode(self, *a))
    run = config(dataset, tmp_path / "run", reuse_share=1.0, temporal_ratio=0.25, lr=2e-2, max_steps=24,
                 save_every=12, train_parts=["tower", "connector", "language_model"])
    final = train(run, progress=False)
    assert calls and all(budget == ratio == 0.25 for ratio, budget in calls)  # every step ran reuse
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]  # it learns from reused states
    import aurora

    assert aurora.load(final).preset.reducer.method == "tome"


def test_data_can_be_several_files_each_with_its_own_media_folder(tmp_path, dataset):
    from aurora.train.data import VideoTextDataset, read_records

    other = tmp_path / "other"
    other.mkdir()
    (other / "only_here.mp4").write_bytes((dataset.parent / "0.mp4").read_bytes())
    first = json.loads(dataset.read_text().splitlines()[0]) | {"video": "only_here.mp4"}
    (other / "more.json").write_text(json.dumps([first]))
    records = read_records([str(dataset), str(other / "more.json")])
    assert len(records) == len(read_records(dataset)) + 1 and records[-1]["_root"] == str(other)
    cfg = config(dataset, tmp_path / "run", data=[str(dataset), str(other / "more.json")], max_steps=2,
                 save_every=2)
    import aurora

    model = aurora.load(train(cfg, progress=False))
    data = VideoTextDataset(records, model.tokenizer, model.template, 4, 512)
    assert data.get(len(records) - 1) is not None  # its video is found in its own folder
    with pytest.raises(Exception, match="not found"):
        read_records([str(dataset), str(tmp_path / "missing.jsonl")])
    with pytest.raises(Exception, match="data must be a file path or a list of file paths"):
        config(dataset, tmp_path, data=[str(dataset), 3])


def test_tokenizer_can_learn_from_other_data_than_the_stage(tmp_path, dataset):
    from aurora.train.loop import initial_model
    from aurora.train.data import read_records

    later = tmp_path / "later.jsonl"
    words = "The checkerboard background zooms and rotates midway."
    later.write_text(json.dumps({"video": "x.mp4", "conversations": [
        {"from": "human", "value": "<video>\nDescribe."}, {"from": "gpt", "value": words}]}) + "\n")
    records = read_records(dataset)
    own = initial_model(config(dataset, tmp_path / "a"), records).tokenizer
    wider = initial_model(config(dataset, tmp_path / "b", scratch={**TINY, "tokenizer_data": str(later)}), records).tokenizer
    assert len(wider.encode(" checkerboard", add_special_tokens=False)) < len(own.encode(" checkerboard", add_special_tokens=False))
    with pytest.raises(Exception, match="missing.jsonl"):
        initial_model(config(dataset, tmp_path / "c", scratch={**TINY, "tokenizer_data": str(tmp_path / "missing.jsonl")}), records)


@pytest.mark.parametrize("stem_name", ["conv", "cnn"])
def test_stem_trains_saves_and_loads_back(dataset, tmp_path, stem_name):
    import aurora
    from aurora.errors import ConfigError
    from aurora.models.auroracap import as_hf_llava, save_xtuner
    from aurora.train.scratch import ScratchConfig
    from aurora.vision.stem import STEMS

    final = train(config(dataset, tmp_path / "run", scratch={**TINY, "vision_stem": stem_name}, lr=2e-2, max_steps=8,
                         save_every=8), progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    model = aurora.load(final)
    stem = model.tower.model.embeddings.patch_embedding
    assert isinstance(stem, STEMS[stem_name]) and model.preset.vision.vision_stem == stem_name
    assert float(stem[1].running_mean.abs().sum()) > 0  # batch-norm statistics were learnt and saved
    save_xtuner(model, tmp_path / "again")
    again = aurora.load(tmp_path / "again")
    pixels = torch.randn(2, model.tower.config.num_channels, 32, 32)
    with torch.no_grad():
        features = model.encode(pixels, 0.5)
        torch.testing.assert_close(again.encode(pixels, 0.5), features, rtol=0, atol=0)
    assert features.shape[1] == model.tower.tokens_per_frame(32, 32, 0.5)  # same token grid as 8-px patches
    with pytest.raises(ConfigError, match="vision stem"):
        as_hf_llava(model)
    with pytest.raises(ConfigError, match="vision_stem"):
        ScratchConfig(vision_stem="resnet")
    with pytest.raises(ConfigError, match="power-of-two"):
        STEMS[stem_name](3, 32, 6)


def test_reinit_parts_start_the_connector_and_lm_afresh_and_keep_the_tower(tmp_path, dataset):
    import aurora
    from aurora.train.loop import reinitialise

    trained = train(config(dataset, tmp_path / "first", max_steps=2, warmup_steps=0, save_every=2), progress=False)
    before = aurora.load(trained)
    states = {part: {k: v.clone() for k, v in getattr(before, part).state_dict().items()}
              for part in ("tower", "connector", "language_model")}
    reinitialise(before, ("connector", "language_model"), seed=5)
    again = aurora.load(trained)
    reinitialise(again, ("connector", "language_model"), seed=5)
    for part, state in states.items():
        now, twin = getattr(before, part).state_dict(), getattr(again, part).state_dict()
        assert all(torch.equal(now[k], twin[k]) for k in now)  # the same seed gives the same weights
        changed = [k for k in state if state[k].is_floating_point() and not torch.equal(state[k], now[k])]
        assert bool(changed) == (part != "tower"), part  # only the named parts are new
    # from a config: the run starts from the fresh parts (seeded by `seed`), the tower as trained
    final = train(config(dataset, tmp_path / "second", model=str(trained), train_parts=["connector", "language_model"],
                         reinit_parts=["language_model", "connector"], max_steps=1, warmup_steps=0,
                         save_every=1), progress=False)
    tower = aurora.load(final).tower.state_dict()
    assert all(torch.equal(tower[k], states["tower"][k]) for k in tower)
    for bad, message in [(dict(reinit_parts=["tower"]), "reinit_parts must be among"),
                         (dict(model=str(trained), train_parts=["connector"], reinit_parts=["language_model"]),
                          "must also be in train_parts"),
                         (dict(reinit_parts=["connector"]), "needs a model"),
                         (dict(model=str(trained), adapter=str(tmp_path), reinit_parts=["language_model"]),
                          "under an adapter")]:
        with pytest.raises(ConfigError, match=message):
            config(dataset, tmp_path, **bad)
    del before.connector  # a model without a separate part: a one-line error, not an AttributeError
    with pytest.raises(ConfigError, match="has no separate connector"):
        reinitialise(before, ("connector",), seed=5)
