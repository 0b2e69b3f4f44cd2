"""Batch captioning: one row per input (failures carry their error), a kill -9 + --resume ends with
the rows of an uninterrupted run, parquet parts survive a kill, the batch shrinks on OOM, and the Ray
engine gives the local engine's rows."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aurora.batch.captioner import Captioner, FrameSettings, decode
from aurora.batch.inputs import read_inputs
from aurora.batch.job import caption_dataset
from aurora.batch.results import open_results
from aurora.errors import ConfigError
from aurora.testing.media import make_frames, truncate_file, write_audio_only, write_text_file, write_video

FAST = dict(num_frames=4, max_new_tokens=12)  # short captions keep every run a few seconds
FAST_FLAGS = ["--num-frames", "4", "--max-new-tokens", "12"]
ROOT = Path(__file__).resolve().parent.parent
CORRUPT = {"bad/text.mp4": "not a video file", "bad/cut.mp4": "", "bad/empty.webm": "empty", "bad/audio.mp4": "no video stream"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """36 generated clips (some in a subfolder, a few images) and 4 corrupt files."""
    root = tmp_path_factory.mktemp("batch-clips")
    (root / "sub").mkdir()
    (root / "bad").mkdir()
    for i in range(36):
        folder = root / "sub" if i % 4 == 0 else root
        write_video(folder / f"clip_{i:02d}.mp4", make_frames(12 + i % 5, seed=i))
    write_text_file(root / "bad/text.mp4")
    truncate_file(write_video(root / "bad/cut.mp4", make_frames(16, seed=99)), 0.3)
    (root / "bad/empty.webm").write_bytes(b"")
    write_audio_only(root / "bad/audio.mp4")
    (root / "notes.txt").write_text("not media: skipped by the directory walk\n")
    return root


@pytest.fixture(scope="module")
def model():
    import aurora

    return aurora.load(None, device="cpu")


@pytest.fixture(scope="module")
def whole(clips, model, tmp_path_factory):
    """The uninterrupted local run every other run is compared with."""
    out = tmp_path_factory.mktemp("whole") / "captions.jsonl"
    threads = torch.get_num_threads()
    rows = caption_dataset(clips, out, model=model, batch_size=8, workers=1, progress=False, **FAST)
    assert torch.get_num_threads() == threads  # the job's thread setting does not outlive it
    return rows, out


def comparable(rows):
    """Rows keyed by path, without timings (the only field that differs between runs)."""
    return {row["path"]: {k: v for k, v in row.items() if k != "timings"} for row in rows}


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_every_input_gets_exactly_one_row_and_failures_carry_their_error(clips, whole):
    rows, out = whole
    inputs = read_inputs(clips)
    assert len(inputs) == 40 and sorted(r["path"] for r in read_jsonl(out)) == sorted(inputs)
    assert comparable(read_jsonl(out)) == comparable(rows)  # what is returned is what was written
    by_path = {row["path"]: row for row in rows}
    for name, message in CORRUPT.items():
        row = by_path[str(clips / name)]
        assert row["caption"] is None and message in row["error"] and row["finish_reason"] == "error"
    good = [row for row in rows if row["error"] is None]
    assert len(good) == 36
    for row in good:
        assert row["caption"] and row["generated_tokens"] > 0 and row["visual_tokens_per_frame"] > 0
        assert len(row["frame_indices"]) == len(row["frame_timestamps"]) == 4
        assert row["settings"] == {"model": "aurora-default", "prompt": "Describe the video in detail.", "num_frames": 4,
                                   "fps": None, "token_kept_ratio": 0.2, "reduction": "tome", "max_new_tokens": 12,
                                   "adapter": None, "lora_alpha": None}
        assert set(row["timings"]) == {"decode", "preprocess", "encode", "prefill", "generate"}


def test_batched_rows_are_the_captions_of_single_calls(clips, whole, model):
    rows, _ = whole
    for row in [r for r in rows if r["error"] is None][:3]:
        reply = model.caption(row["path"], **FAST)
        assert (reply.text, reply.frame_indices[0]) == (row["caption"], row["frame_indices"])


def test_kill_9_then_resume_ends_with_the_rows_of_an_uninterrupted_run(clips, whole, model, tmp_path, capsys):
    from aurora.cli import main

    out = tmp_path / "killed.jsonl"
    command = [sys.executable, "-m", "aurora.cli", "caption-batch", str(clips), "--out", str(out),
               "--batch-size", "2", "--workers", "1", "--no-progress", *FAST_FLAGS]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL, job.stderr.read().decode()[-2000:]  # killed mid-run, not finished
    written = read_jsonl(out)
    assert 6 <= len(written) < 40
    with open(out, "a") as f:
        f.write('{"path": "' + str(clips / "clip_99.mp4") + '", "capt')  # a write the kill tore

    assert main(command[3:]) == 2  # never silently mixed with a fresh start
    err = capsys.readouterr().err
    assert "--resume" in err and err.count("\n") == 1

    # The CLI's flags with --resume, in this process (its model is loaded already)
    caption_dataset(clips, out, model=model, batch_size=2, resume=True, progress=False, **FAST)
    rows = read_jsonl(out)
    assert len(rows) == len({row["path"] for row in rows}) == 40  # nothing lost, nothing twice, the torn line gone
    assert comparable(rows) == comparable(whole[0])
    assert rows[: len(written)] == written  # the killed run's rows were kept as they were


def test_resume_refuses_other_settings(clips, whole, model):
    _, out = whole
    with pytest.raises(ConfigError, match="settings"):
        caption_dataset(clips, out, model=model, resume=True, progress=False, num_frames=2, max_new_tokens=24)


def test_a_job_reduces_as_reduction_says_and_resumes_only_with_it(clips, whole, model, tmp_path, capsys):
    from aurora.cli import main

    inputs = [path for path in read_inputs(clips) if "clip_" in path][1:4]
    out = tmp_path / "both.jsonl"
    rows = caption_dataset(inputs, out, model=model, reduction="both", token_kept_ratio=0.05, progress=False, **FAST)
    for row in rows:
        assert row["settings"]["reduction"] == "both" and row["settings"]["token_kept_ratio"] == 0.05
        reply = model.caption(row["path"], reduction="both", token_kept_ratio=0.05, **FAST)
        assert row["caption"] == reply.text  # merged across time, as a single call with the same options
        assert row["visual_tokens_per_frame"] == reply.visual_tokens_per_frame[0]
    assert model.reduction == "tome"  # the job left the model's own method alone
    with pytest.raises(ConfigError, match="settings"):  # the same file with another method is not mixed in
        caption_dataset(inputs, out, model=model, token_kept_ratio=0.05, resume=True, progress=False, **FAST)
    assert main(["caption-batch", str(clips), "--out", str(tmp_path / "x.jsonl"), "--reduction", "pool"]) == 2
    assert "--reduction: invalid choice: 'pool'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="reduction must be one of"):
        caption_dataset(inputs, tmp_path / "y.jsonl", model=model, reduction="pool", progress=False)
    assert not (tmp_path / "y.jsonl").exists()


def test_a_file_from_before_reduction_was_recorded_resumes_with_the_presets_method(clips, whole, model, tmp_path):
    inputs = [path for path in read_inputs(clips) if "clip_" in path][1:4]
    out = tmp_path / "old.jsonl"
    caption_dataset(inputs[:2], out, model=model, progress=False, **FAST)
    rows = read_jsonl(out)
    for row in rows:
        del row["settings"]["reduction"]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert len(caption_dataset(inputs, out, model=model, resume=True, progress=False, **FAST)) == 3
    with pytest.raises(ConfigError, match="settings"):
        caption_dataset(inputs, out, model=model, reduction="both", resume=True, progress=False, **FAST)


def test_parquet_output_resumes_from_its_parts(clips, whole, model, tmp_path):
    inputs = read_inputs(clips)
    settings = whole[0][0]["settings"]
    out = tmp_path / "captions.parquet"
    first = [row for row in whole[0] if row["path"] in inputs[:10]]
    writer = open_results(out, resume=False, settings=settings)
    writer.flush_rows = 4
    writer.write(first[:6])  # a part of 6 rows
    writer.write(first[6:])  # a part of 4
    (writer.parts / "part-000002.parquet.tmp").write_bytes(b"half a part")  # the kill hit a part mid-write
    assert not out.exists()  # killed: never combined

    rows = caption_dataset(inputs[:14], out, model=model, resume=True, progress=False, batch_size=8, **FAST)
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert not writer.parts.exists() and table.num_rows == 14
    expected = {path: row for path, row in comparable(whole[0]).items() if path in inputs[:14]}
    assert comparable(table.to_pylist()) == comparable(rows) == expected
    assert table.column("path").to_pylist()[:10] == [row["path"] for row in first]  # the parts' rows first, as written


def test_inputs_from_lists_and_tables(clips, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = read_inputs(clips)
    assert found == sorted(found) and str(clips / "sub/clip_00.mp4") in found and not any(p.endswith(".txt") for p in found)
    listed = tmp_path / "list.txt"
    listed.write_text("# my clips\n" + "\n".join(found[:3] + found[:1]) + "\n\nhttps://example.com/a.mp4\n")
    assert read_inputs(listed) == found[:3] + ["https://example.com/a.mp4"]  # duplicates dropped
    (tmp_path / "t.csv").write_text("id,video\n" + "".join(f"{i},{p}\n" for i, p in enumerate(found[:3])))
    assert read_inputs(tmp_path / "t.csv", column="video") == found[:3]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"path": p}) + "\n" for p in found[:3]))
    assert read_inputs(tmp_path / "t.jsonl") == found[:3]
    pq.write_table(pa.table({"path": found[:3]}), tmp_path / "t.parquet")
    assert read_inputs(tmp_path / "t.parquet") == found[:3]
    with pytest.raises(ConfigError, match="no column 'path'.*id, video"):
        read_inputs(tmp_path / "t.csv")


def test_urls_are_fetched_and_private_addresses_refused(clips):
    frames = FrameSettings(4, None, "uniform")
    fetched = decode(f"file://{clips / 'clip_01.mp4'}", frames)
    assert fetched.error is None and len(fetched.frames.indices) == 4
    refused = decode("http://127.0.0.1:9/clip.mp4", frames)
    assert refused.frames is None and "non-public address" in refused.error


@pytest.mark.parametrize("argv, message", [
    (["/nonexistent/dir", "--out", "OUT/x.jsonl"], "not found"),
    (["CLIPS", "--out", "OUT/x.csv"], ".jsonl or .parquet"),
    (["CLIPS", "--out", "OUT/x.jsonl", "--column", "video"], "--column"),
    (["CLIPS", "--out", "OUT/x.jsonl", "--address", "auto"], "--engine ray"),
    (["CLIPS", "--out", "OUT/x.jsonl", "--batch-size", "0"], ">= 1"),
])
def test_mistakes_are_one_line_and_exit_2(clips, tmp_path, capsys, argv, message):
    from aurora.cli import main

    argv = [a.replace("CLIPS", str(clips)).replace("OUT", str(tmp_path)) for a in argv]
    assert main(["caption-batch", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


class FakeModel:
    """caption_batch that runs out of memory above `fits` inputs and fails on one named input."""

    def __init__(self, fits, broken=None):
        self.fits, self.broken, self.calls = fits, broken, []

    def caption_batch(self, visuals, **kwargs):
        self.calls.append(len(visuals))
        if len(visuals) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if any(v.path == self.broken for v in visuals):
            raise ValueError("something in this input breaks the model")
        from aurora.models.reply import Reply

        return [Reply(text=f"caption of {v.path}", model="fake", frame_indices=[v.indices], frame_timestamps=[v.timestamps],
                      visual_tokens_per_frame=[16], generated_tokens=3, timings={"prefill": 1.0, "generate": 2.0}) for v in visuals]


def test_the_batch_halves_until_it_fits_and_a_failing_input_is_isolated(clips):
    frames = FrameSettings(4, None, "uniform")
    items = [decode(str(clips / f"clip_{i:02d}.mp4"), frames) for i in range(1, 12) if i % 4]
    items.append(decode(str(clips / "bad/empty.webm"), frames))
    model = FakeModel(fits=3, broken=items[4].path)
    settings = {"model": "fake", "prompt": "Describe.", "num_frames": 4, "fps": None, "token_kept_ratio": 0.2,
                "reduction": "tome", "max_new_tokens": 8}
    captioner = Captioner(model, settings, batch_size=8)
    rows = captioner(items)
    assert sorted(r["path"] for r in rows) == sorted(it.path for it in items)  # one row each
    assert captioner.batch_size <= 3 and max(model.calls[2:]) <= 4
    errors = {r["path"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {items[4].path, str(clips / "bad/empty.webm")}
    assert errors[items[4].path] == "ValueError: something in this input breaks the model"
    ok = [r for r in rows if not r["error"]]
    assert all(r["caption"] == f"caption of {r['path']}" for r in ok)
    assert {r["timings"]["generate"] for r in ok} <= {2.0, 1.0, 2 / 3}  # the batch's time shared by its inputs


@pytest.mark.slow  # ~35 s here: a Ray cluster starts and its actor loads the model
def test_ray_engine_gives_the_local_engines_rows(clips, whole, tmp_path):
    ray = pytest.importorskip("ray")
    inputs = [str(clips / name) for name in ("bad/text.mp4", "bad/empty.webm")] + read_inputs(clips)[5::6]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        rows = caption_dataset(inputs, tmp_path / "ray.jsonl", engine="ray", workers=1, batch_size=4, progress=False, **FAST)
    finally:
        ray.shutdown()
    expected = {path: row for path, row in comparable(whole[0]).items() if path in inputs}
    assert len(expected) == len(inputs) == 8
    assert comparable(read_jsonl(tmp_path / "ray.jsonl")) == comparable(rows) == expected
