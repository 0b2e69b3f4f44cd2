"""Evaluation over endpoints and judges, hardened: judge replies parsed safely across threads, a
bad reply recorded (never fatal), identical requests in flight sent once, the endpoint told the
frames it must sample, Video-MME's current extraction, VDC's published aggregation, synth --resume."""

from __future__ import annotations

import ast
import threading
import time
from types import SimpleNamespace

import pytest

from aurora.eval import judge as judge_module
from aurora.eval.judge import Judge, JudgeCache, literal_dict, parse_pred_score
from aurora.eval.predictors import EndpointPredictor
from aurora.eval.task import Query
from aurora.eval.tasks import vdc, videomme
from aurora.testing.media import make_frames, write_video


class FakeClient:
    """A ChatClient stand-in: records each request, answers after `delay` seconds."""

    model = "fake-judge"

    def __init__(self, reply="{'pred': 'yes', 'score': 5}", delay=0.0):
        self.reply, self.delay = reply, delay
        self.calls: list[dict] = []
        self._lock = threading.Lock()

    def complete(self, messages, **params):
        with self._lock:
            self.calls.append({"messages": messages, **params})
        time.sleep(self.delay)
        return self.reply

    def describe(self):
        return {"url": "fake", "model": self.model}

    def close(self):
        pass


def test_identical_requests_in_flight_are_sent_once(tmp_path):
    client = FakeClient(delay=0.3)
    judge = Judge(client, JudgeCache(tmp_path / "c.sqlite"), concurrency=8)
    messages = [{"role": "user", "content": "same question"}]
    start = threading.Barrier(8)

    def ask(_):
        start.wait()
        return judge.ask(messages, parse_pred_score)

    verdicts = judge.map(ask, list(range(8)))
    assert len(client.calls) == 1 and judge.requests == 1
    assert all(v.parsed == {"pred": "yes", "score": 5.0} for v in verdicts)
    other = judge.ask([{"role": "user", "content": "another"}], parse_pred_score)
    assert other.ok and len(client.calls) == 2


def test_concurrent_parsing_never_enters_the_ast_constructor_twice(monkeypatch):
    """CPython gh-106905: two threads in the AST constructor raise SystemError. Here a stand-in
    literal_eval raises it whenever two threads are inside at once; parsing must still succeed."""
    real, inside, lock = ast.literal_eval, [0], threading.Lock()

    def fragile(text):
        with lock:
            inside[0] += 1
            clash = inside[0] > 1
        try:
            time.sleep(0.002)
            if clash:
                raise SystemError("AST constructor recursion depth mismatch (before=1, after=2)")
            return real(text)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(judge_module.ast, "literal_eval", fragile)
    results = []
    threads = [threading.Thread(target=lambda: results.extend(
        literal_dict("{'pred': 'yes', 'score': 4}") for _ in range(20))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [{"pred": "yes", "score": 4}] * 120


def test_a_parser_that_raises_is_an_unparsed_reply_not_a_crash(tmp_path):
    client = FakeClient(reply="{'pred': 'yes', 'score': 5}")
    judge = Judge(client, JudgeCache(tmp_path / "c.sqlite"), parse_attempts=2)

    def broken(_text):
        raise SystemError("AST constructor recursion depth mismatch")

    verdict = judge.ask([{"role": "user", "content": "q"}], broken)
    assert not verdict.ok and "unparsable" in verdict.error and len(verdict.replies) == 2
    assert literal_dict("{" * 30_000) is None  # over the parse cap: unparsed, not slow


def test_endpoint_video_mode_sends_the_sampling_it_records(tmp_path):
    video = write_video(tmp_path / "v.mp4", make_frames(4, 32, 32))
    client = FakeClient(reply="A")
    predictor = EndpointPredictor(client, media_mode="video", num_frames=16, fps=2.0)
    predictor.answer([Query(str(video), "What happens?")])
    call = client.calls[0]
    assert call["num_frames"] == 16 and call["fps"] == 2.0
    assert call["media_io_kwargs"] == {"video": {"num_frames": 16, "fps": 2.0}}
    assert predictor.describe()["num_frames"] == 16
    frames = EndpointPredictor(FakeClient(reply="A"), media_mode="frames", num_frames=2)
    frames.answer([Query(str(video), "What happens?")])
    assert "media_io_kwargs" not in frames.client.calls[0]  # frames are sent as images: nothing to sample


@pytest.mark.parametrize("reply, current, legacy", [
    ("Answer: B", "B", "A"),  # "Answer" holds an A, which the legacy list does not strip
    ("Best option: C", "C", "B"),
    ("The correct option is D", "D", "D"),
    ("Option: C", "C", "C"),
    ("The correct answer (C) fits", "C", "C"),
    ("C", "C", "C"),
    ("I am not sure what the video shows here, it is very hard to tell honestly", "", ""),
])
def test_videomme_current_official_extraction_and_the_legacy_option(reply, current, legacy):
    assert videomme.extract_answer(reply) == current
    assert videomme.extract_answer(reply, "legacy") == legacy


def test_videomme_records_the_rule_that_ran():
    args = SimpleNamespace(answer_extraction="legacy")
    record = videomme.score({**dict.fromkeys(videomme.BREAKDOWNS, "x"), "id": "1", "answer": "B"}, ["Answer: B"],
                            None, args)
    assert record["extracted"] == "A"
    assert videomme.protocol(args)["answer_extraction"] == "legacy"
    assert videomme.protocol(SimpleNamespace(answer_extraction="current"))["answer_prefixes"][-1] == "The correct option"


def test_vdc_published_aggregation_drops_zero_and_failed_videos():
    records = [
        {"caption_type": "short", "accuracy": 1.0, "score": 4.0, "judge_failures": 0},
        {"caption_type": "short", "accuracy": 0.0, "score": 0.0, "judge_failures": 0},  # dropped: zero
        {"caption_type": "short", "accuracy": 0.5, "score": 2.0, "judge_failures": 1},  # dropped: a failure
    ]
    base = dict(caption_types="short", judge_failure="zero")
    every = vdc.aggregate(records, SimpleNamespace(**base, aggregation="all"))["short"]
    published = vdc.aggregate(records, SimpleNamespace(**base, aggregation="published"))["short"]
    assert every["videos"] == 3 and every["accuracy"] == pytest.approx(50.0) and every["score"] == pytest.approx(2.0)
    assert published["videos"] == 1 and published["dropped"] == 2
    assert published["accuracy"] == pytest.approx(100.0) and published["score"] == pytest.approx(4.0)
    assert "aggregation: published" in vdc.table({"short": published})
    assert vdc.protocol(SimpleNamespace(**base, aggregation="published", prompt_seed=0))["aggregation"] == "published"


def test_eval_synth_accepts_resume():
    from aurora.cli import build_parser

    args = build_parser().parse_args(["eval", "synth", "--data", "d.jsonl", "--out", "o", "--resume"])
    assert args.resume is True


def test_protocol_frames_decode_at_the_models_size(tmp_path):
    from aurora.eval.frames import load_frames
    from aurora.eval.task import FrameSpec

    video = write_video(tmp_path / "v.mp4", make_frames(16, 96, 160))
    full = load_frames(str(video), FrameSpec(4))
    small = load_frames(str(video), FrameSpec(4), size=48)
    assert full.array.shape == (4, 96, 160, 3) and small.array.shape == (4, 48, 80, 3)
    assert small.indices == full.indices
