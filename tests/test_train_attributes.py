"""The tower-only objective: targets from synth attributes, merged labels, training, resume."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aurora.errors import ConfigError
from aurora.synth import Scene, SynthConfig, generate, render
from aurora.synth.vocab import BACKGROUND_TYPES, CAMERAS, COLOURS, KINDS, MOTIONS, SIZES, rgb
from aurora.train import load_config, train
from aurora.train.attributes import CLIP_HEADS, OBJECT_HEADS, merged_labels, merged_members, synth_targets
from aurora.train.data import IGNORE

TINY = dict(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2, vision_mlp=64,
            lm_hidden=32, lm_layers=2, lm_heads=2, lm_mlp=64, vocab_size=300, num_frames=4, max_new_tokens=16,
            temporal_input="motion", vision_stem="cnn")


def scene(**first) -> dict:
    """Two objects: a static large red square top left, a small blue circle bottom right."""
    square = dict(kind="square", colour="red", size="large", motion="static", event=None, new_colour=None,
                  x=0.25, y=0.25, angle=0.0)
    circle = dict(kind="circle", colour="blue", size="small", motion="static", event=None, new_colour=None,
                  x=0.75, y=0.75, angle=0.0)
    return {"camera": "pan_left", "background": {"type": "texture", "colours": ["white", "black"], "pattern": "dots",
                                                  "orientation": 0, "speckle_seed": 1},
            "objects": [{**square, **first}, circle]}


def test_targets_put_each_object_on_its_own_patches():
    targets = synth_targets(scene(), [0, 15], 16, 64, 8)  # 8x8 grid; patch (r, c) is index 8r + c
    tokens, clip = targets.tokens, targets.clip
    assert clip == {"camera": CAMERAS.index("pan_left"), "background": BACKGROUND_TYPES.index("texture"),
                    "pattern": CLIP_HEADS["pattern"].index("dots"), "background_colour": COLOURS.index("white"),
                    "background_colour_2": COLOURS.index("black"), "count": 1}
    square, circle, corner = 2 * 8 + 1, 6 * 8 + 6, 7
    for t in (0, 1):
        assert tokens["kind"][t, square] == KINDS.index("square") and tokens["colour"][t, square] == COLOURS.index("red")
        assert tokens["kind"][t, circle] == KINDS.index("circle") and tokens["size"][t, circle] == SIZES.index("small")
        assert tokens["motion"][t, circle] == MOTIONS.index("static")
        assert tokens["order"][t, square] == 0 and tokens["order"][t, circle] == 1
        assert tokens["object"][t, corner] == 0 and tokens["kind"][t, corner] == IGNORE
    # a large square (18 px sides at 7-25 px) fills 2x2 patches; the edges cover too little of theirs
    assert (tokens["kind"][0] == KINDS.index("square")).sum() == 4
    assert (tokens["kind"][0] == KINDS.index("circle")).sum() >= 1
    assert ((tokens["object"] == 1) == (tokens["kind"] != IGNORE)).all()
    # pooled per object: the 2x2 patches and the 8 edge ones (15% covered; corners 2%); no third object
    assert targets.members.shape == (2, 3, 64) and not targets.members[:, 2].any()
    assert targets.members[0, 0].sum() == 12 and targets.members[0, 1].sum() >= 4
    assert targets.objects["kind"][0].tolist() == [KINDS.index("square"), KINDS.index("circle"), IGNORE]
    assert targets.objects["colour"][1].tolist() == [COLOURS.index("red"), COLOURS.index("blue"), IGNORE]


def test_targets_follow_events_and_motion_over_time():
    targets = synth_targets(scene(event="appears"), [0, 8, 15], 16, 64, 8)
    tokens = targets.tokens
    assert not (tokens["kind"][0] == KINDS.index("square")).any()  # not there yet
    assert (tokens["kind"][1] == KINDS.index("square")).any()
    assert targets.objects["kind"][:, 0].tolist() == [IGNORE, KINDS.index("square"), KINDS.index("square")]
    assert not targets.members[0, 0].any()
    tokens = synth_targets(scene(event="changes_colour", new_colour="green"), [0, 15], 16, 64, 8).tokens
    assert COLOURS.index("red") in tokens["colour"][0] and COLOURS.index("red") not in tokens["colour"][1]
    assert COLOURS.index("green") in tokens["colour"][1]
    tokens = synth_targets(scene(motion="right"), [0, 15], 16, 64, 8).tokens
    columns = [np.nonzero((tokens["kind"][t] == KINDS.index("square")).reshape(8, 8).any(0))[0].mean() for t in (0, 1)]
    assert columns[1] > columns[0] + 1.5  # 30% of 64 px is 2.4 patches to the right
    with pytest.raises(ConfigError, match="synth attributes"):
        synth_targets({"camera": "spin"}, [0], 16, 64, 8)


def test_targets_match_the_rendered_pixels():
    """Every patch labelled with an object's colour shows that colour in the rendered frame."""
    config = SynthConfig(num_clips=1, size=64, frames=16)
    attributes = scene(motion="down", event="changes_colour", new_colour="green")
    frames = render(Scene.from_dict(attributes), config)  # (16, 64, 64, 3)
    indices = [0, 5, 10, 15]
    tokens = synth_targets(attributes, indices, 16, 64, 8).tokens
    checked = 0
    for t, frame in enumerate(indices):
        patches = frames[frame].reshape(8, 8, 8, 8, 3).transpose(0, 2, 1, 3, 4).reshape(64, 64, 3).astype(float)
        for p in np.nonzero(tokens["colour"][t] != IGNORE)[0]:
            colour = rgb(COLOURS[tokens["colour"][t, p]]).astype(float)
            share = (np.abs(patches[p] - colour).max(-1) < 30).mean()  # pixels of that colour in the patch
            assert share >= 0.2, (frame, p, COLOURS[tokens["colour"][t, p]], share)
            checked += 1
    assert checked >= 20


def test_merged_tokens_take_the_label_most_of_their_patches_have():
    patches = torch.tensor([[2, 2, 1, IGNORE, IGNORE, IGNORE], [0, 1, 1, 1, IGNORE, 2]])
    source = torch.tensor([[0, 0, 0, 1, 1, 2], [0, 0, 0, 1, 1, 2]])  # patch -> output token
    assert merged_labels(patches, source, 3, 3).tolist() == [[2, IGNORE, IGNORE], [1, 1, 2]]
    members = torch.tensor([[[True, False, False, False, False, True]], [[False] * 6]])  # (N, 1 object, P)
    assert merged_members(members, source, 3).tolist() == [[[True, False, True]], [[False, False, False]]]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    config = SynthConfig(num_clips=12, size=32, frames=8, seed=5, splits=(1, 0, 0),
                         out=str(tmp_path_factory.mktemp("synth") / "data"))
    generate(config, progress=False)
    path = f"{config.out}/train.jsonl"
    records = [json.loads(line) for line in open(path)]
    records.append({**records[0], "attributes": None})  # a caption record without ground truth: skipped
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return path


def attribute_config(data, out, **overrides):
    settings = dict(data=data, output_dir=str(out), scratch=TINY, objective="attributes", train_parts=["tower"],
                    token_kept_ratio=0.5, num_frames=4, attribute_frames=2, batch_size=4, lr=5e-3, warmup_steps=2, max_steps=12,
                    save_every=4, log_every=2, seed=0)
    return load_config(**{**settings, **overrides})


def test_attribute_training_learns_exports_the_tower_and_resumes(synth_data, tmp_path, monkeypatch):
    import aurora
    from aurora.train import attributes

    final = train(attribute_config(synth_data, tmp_path / "straight", max_steps=16, save_every=8), progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < 0.8 * metrics[0]["loss"]
    assert set(metrics[-1]["accuracy"]) == {"object", "kind", "colour", "size", "motion", "order", *CLIP_HEADS,
                                             *(f"object_{name}" for name in OBJECT_HEADS)}
    assert json.loads((tmp_path / "straight" / "summary.json").read_text())["skipped_records"] == 1
    first = load_file(tmp_path / "straight" / "checkpoints" / "step_00000008" / "weights.safetensors")
    last = load_file(tmp_path / "straight" / "checkpoints" / "step_00000016" / "weights.safetensors")
    changed = {k.split(".")[0] for k in first if not torch.equal(first[k], last[k])}
    assert changed == {"tower"}  # the projector and language model stay as built
    model = aurora.load(final)  # a full captioner, its tower trained
    torch.testing.assert_close(model.tower.state_dict()["model.embeddings.position_embedding.weight"],
                               last["tower.model.embeddings.position_embedding.weight"])

    calls = {"n": 0}
    forward = attributes.AttributeLoss.forward

    def dies_in_step_7(self, samples, ratio):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return forward(self, samples, ratio)

    reference = train(attribute_config(synth_data, tmp_path / "reference"), progress=False)
    monkeypatch.setattr(attributes.AttributeLoss, "forward", dies_in_step_7)
    with pytest.raises(KeyboardInterrupt):
        train(attribute_config(synth_data, tmp_path / "killed"), progress=False)
    monkeypatch.setattr(attributes.AttributeLoss, "forward", forward)
    resumed = train(attribute_config(synth_data, tmp_path / "killed"), resume=True, progress=False)
    for name in ("weights.safetensors", "heads.safetensors"):
        a = load_file(reference.parent / "checkpoints" / "step_00000012" / name)
        b = load_file(resumed.parent / "checkpoints" / "step_00000012" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_a_frame_subset_keeps_its_targets_aligned(synth_data):
    """attribute_frames: the drawn frames and their targets stay together; temporal channels come
    from the whole clip first."""
    from aurora.train.attributes import AttributeDataset, AttributeHeads, AttributeLoss
    from aurora.train.data import read_records
    from aurora.train.loop import initial_model

    cfg = attribute_config(synth_data, "unused")
    model = initial_model(cfg, read_records(synth_data))
    dataset = AttributeDataset(read_records(synth_data), 4, 32, 8)
    sample = dataset.get(0)
    full = model.transform(sample.frames)  # (4, C, 32, 32)
    torch.manual_seed(3)
    sub = AttributeLoss(model, AttributeHeads(32), frames_per_clip=2)._subsample(sample)
    kept = [i for i in range(4) for j in range(2) if torch.equal(full[i], sub.frames[j])]
    assert len(kept) == 2 and kept == sorted(kept)
    assert np.array_equal(sub.targets.tokens["colour"], sample.targets.tokens["colour"][kept])
    assert np.array_equal(sub.targets.members, sample.targets.members[kept])


def test_a_frozen_tower_keeps_its_batch_norm_statistics(synth_data, tmp_path):
    first = train(attribute_config(synth_data, tmp_path / "tower", max_steps=4, save_every=4), progress=False)
    caption = load_config(data=synth_data, output_dir=str(tmp_path / "caption"), model=str(first),
                          train_parts=["connector", "language_model"], num_frames=4, batch_size=4, max_steps=4,
                          warmup_steps=0, save_every=4, lr=1e-3)
    train(caption, progress=False)
    before = load_file(tmp_path / "tower" / "checkpoints" / "step_00000004" / "weights.safetensors")
    after = load_file(tmp_path / "caption" / "checkpoints" / "step_00000004" / "weights.safetensors")
    stats = [k for k in before if k.startswith("tower.") and "running_mean" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)


def test_data_without_ground_truth_stops_with_one_line(tmp_path, capsys):
    """Caption-only records for the attributes objective: every record is skipped, so the run
    stops with a one-line error and exit code 2 instead of training on nothing."""
    from aurora.cli import main

    root = tmp_path / "data"
    root.mkdir()
    records = [{"video": f"{i}.mp4", "conversations": [{"from": "human", "value": "<video>\nDescribe."},
                                                       {"from": "gpt", "value": "A clip."}]} for i in range(3)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data: {root / 'train.jsonl'}\nscratch: {json.dumps(TINY)}\nobjective: attributes\n"
                      f"train_parts: [tower]\nbatch_size: 2\nnum_frames: 4\nmax_steps: 3\nwarmup_steps: 0\n")
    code = main(["train", "--config", str(config), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "nothing to train on" in err and "synth attributes" in err and "Traceback" not in err


def test_attribute_objective_trains_the_tower_alone(synth_data, tmp_path):
    with pytest.raises(ConfigError, match="train_parts: \\[tower\\]"):
        attribute_config(synth_data, tmp_path, train_parts=["tower", "connector"])
    with pytest.raises(ConfigError, match="attribute_frames"):
        attribute_config(synth_data, tmp_path, attribute_frames=-1)
    with pytest.raises(ConfigError, match="objective attributes only"):
        attribute_config(synth_data, tmp_path, objective="caption", train_parts=["connector"])
    with pytest.raises(ConfigError, match="objective must be one of"):
        attribute_config(synth_data, tmp_path, objective="contrastive")
