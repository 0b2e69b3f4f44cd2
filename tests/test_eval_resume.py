"""Killed and resumed runs end with the numbers of uninterrupted ones; ranks shard and merge."""

import json

import pytest

from aurora.errors import ConfigError
from aurora.eval.judge import JudgeUnavailable
from aurora.eval.records import read_jsonl
from tests.eval_fixtures.helpers import (FIXTURES, VDC_CAPTIONS, VIDEOQA_PREDICTIONS, Scripted, evaluate, judge_flags,
                                         vdc_caption)


def videoqa_flags(media, out):
    return ["videoqa", "--questions", str(FIXTURES / "videoqa/test_q.json"),
            "--answers", str(FIXTURES / "videoqa/test_a.json"), "--video-dir", str(media / "videoqa"),
            "--out", str(out), "--batch-size", "1"]


def vdc_flags(media, out):
    return ["vdc", "--qa-dir", str(FIXTURES / "vdc"), "--video-dir", str(media / "vdc"),
            "--caption-types", "camera,short", "--out", str(out), "--batch-size", "1"]


def script(query):
    return VIDEOQA_PREDICTIONS[query.prompt]


@pytest.mark.parametrize("kill_after", [1, 3])
def test_kill_and_resume_gives_the_same_numbers(media, server, tmp_path, kill_after):
    whole = evaluate(videoqa_flags(media, tmp_path / "whole") + judge_flags(server), Scripted(script))
    out = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        evaluate(videoqa_flags(media, out) + judge_flags(server), Scripted(script, fail_after=kill_after))
    written = read_jsonl(out / "predictions.jsonl")
    assert len(written) == kill_after and not (out / "summary.json").exists()
    with open(out / "predictions.jsonl", "a") as f:
        f.write('{"id": "4", "question": "torn')  # the kill tore the last write
    with pytest.raises(ConfigError, match="--resume"):  # never silently mixed with a fresh start
        evaluate(videoqa_flags(media, out) + judge_flags(server), Scripted(script))
    again = Scripted(script)
    resumed = evaluate(videoqa_flags(media, out) + judge_flags(server) + ["--resume"], again)
    assert again.answered == 5 - kill_after  # finished items were skipped
    assert resumed["results"] == whole["results"]
    ids = [r["id"] for r in read_jsonl(out / "predictions.jsonl")]
    assert sorted(ids) == ["0", "1", "2", "3", "4"]  # no loss, no duplicates, the torn line gone


def test_unreachable_judge_stops_the_run_and_resume_finishes_it(media, server, tmp_path):
    whole = evaluate(vdc_flags(media, tmp_path / "whole") + judge_flags(server), Scripted(vdc_caption))
    out = tmp_path / "down"
    dead = ["--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "rules", "--judge-timeout", "0.2",
            "--judge-retries", "1", "--judge-backoff", "0.01"]
    with pytest.raises(JudgeUnavailable, match="--resume"):
        evaluate(vdc_flags(media, out) + dead, Scripted(vdc_caption))
    assert read_jsonl(out / "predictions.jsonl") == []  # nothing recorded as a failure
    resumed = evaluate(vdc_flags(media, out) + judge_flags(server) + ["--resume"], Scripted(vdc_caption))
    assert resumed["results"] == whole["results"]


def test_resume_refuses_another_configuration(media, server, tmp_path):
    evaluate(videoqa_flags(media, tmp_path) + judge_flags(server) + ["--limit", "2"], Scripted(script))
    with pytest.raises(ConfigError, match="different configuration"):
        evaluate(videoqa_flags(media, tmp_path) + judge_flags(server) + ["--resume", "--post-prompt", " Why?"],
                 Scripted(lambda q: "x"))
    more = evaluate(videoqa_flags(media, tmp_path) + judge_flags(server) + ["--resume"], Scripted(script))
    assert more["items"] == 5  # a larger --limit just continues


def test_ranks_shard_by_files_and_rank0_merges(media, server, tmp_path, monkeypatch):
    single = evaluate(vdc_flags(media, tmp_path / "single") + judge_flags(server), Scripted(vdc_caption))
    out = tmp_path / "sharded"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="never arrived"):  # rank 1 has not run: rank 0 waits, then gives up
        evaluate(vdc_flags(media, out) + judge_flags(server) + ["--shard-timeout", "0.3"], Scripted(vdc_caption))
    monkeypatch.setenv("RANK", "1")
    one = Scripted(vdc_caption)
    assert evaluate(vdc_flags(media, out) + judge_flags(server), one) is None  # only rank 0 summarises
    assert one.answered == 2  # items 1 and 3 of 4
    shard = [r["id"] for r in read_jsonl(out / "predictions.rank1-of-2.jsonl")]
    assert sorted(shard) == ["camera/vid_b", "short/vid_b"]
    monkeypatch.setenv("RANK", "0")
    zero = Scripted(vdc_caption)
    merged = evaluate(vdc_flags(media, out) + judge_flags(server) + ["--resume"], zero)
    assert zero.answered == 0  # its items were written by the run that timed out waiting
    assert merged["results"] == single["results"] and merged["config"]["world_size"] == 2
    lines = [json.loads(l) for l in (out / "predictions.jsonl").read_text().splitlines()]
    assert [l["id"] for l in lines] == [f"{k}/{v}" for k, v in sorted(VDC_CAPTIONS, key=lambda kv: kv[0] != "camera")]
