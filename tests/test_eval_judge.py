"""The judge over real HTTP: retries and backoff, timeouts, 4xx, unparsable replies, the disk cache."""

import pytest

from aurora.eval.chat_client import ChatClient, ChatError, completions_url
from aurora.eval.judge import Judge, JudgeCache, JudgeUnavailable, literal_dict, parse_pred_score, parse_score
from aurora.eval.tasks.videoqa import qa_judge_messages
from tests.eval_fixtures.judge_server import JudgeServer


@pytest.fixture(scope="module")
def server():
    with JudgeServer() as s:
        yield s


def make_judge(server, tmp_path, **kwargs):
    client = ChatClient(server.url, "rules", timeout=0.5, retries=3, backoff=0.01)
    return Judge(client, JudgeCache(tmp_path / "cache.sqlite"), **kwargs)


def test_reply_parsing():
    assert literal_dict("{'pred': 'yes', 'score': 4}") == {"pred": "yes", "score": 4}
    assert literal_dict('Sure! ```python\n{"pred": "no", "score": 0}\n```') == {"pred": "no", "score": 0}
    assert literal_dict("yes, 4") is None and literal_dict("") is None and literal_dict("[1, 2]") is None
    assert parse_pred_score("{'pred': 'yes', 'score': '3'}") == {"pred": "yes", "score": 3.0}
    assert parse_pred_score("{'pred': 'yes'}") is None  # no score
    assert parse_pred_score("{'pred': 1, 'score': 2}") is None  # pred not a string
    assert parse_score("{''score': 4.8}") is None  # the published example itself is not a dict
    assert parse_score("{'score': 4.8}") == {"score": 4.8}
    assert completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


def test_verdicts_retries_and_failures(server, tmp_path):
    judge = make_judge(server, tmp_path)
    ok = judge.ask(qa_judge_messages("q", "red", "red"), parse_pred_score)
    assert ok.ok and ok.parsed == {"pred": "yes", "score": 5.0} and ok.requests == 1

    flaky = judge.ask(qa_judge_messages("q #http500", "red", "blue"), parse_pred_score)  # 500, 500, then fine
    assert flaky.parsed == {"pred": "no", "score": 1.0} and flaky.requests == 1  # one verdict, retried inside

    slow = judge.ask(qa_judge_messages("q #timeout", "red", "a red one"), parse_pred_score)  # timed out once
    assert slow.parsed == {"pred": "yes", "score": 4.0}

    second = judge.ask(qa_judge_messages("q #retry-parse", "red", "red"), parse_pred_score)
    assert second.ok and len(second.replies) == 2 and second.requests == 2  # asked again after a bad reply

    fenced = judge.ask(qa_judge_messages("q #fenced", "red", "red"), parse_pred_score)
    assert fenced.parsed == {"pred": "yes", "score": 5.0} and fenced.replies[0].startswith("```python")

    bad = judge.ask(qa_judge_messages("q #malformed", "red", "red"), parse_pred_score)
    assert not bad.ok and bad.parsed is None and len(bad.replies) == 3 and "unparsable" in bad.error

    before = server.requests
    refused = judge.ask(qa_judge_messages("q #http400", "red", "red"), parse_pred_score)
    assert not refused.ok and "HTTP 400" in refused.error and server.requests == before + 1  # no retry on 4xx


def test_cache_replays_without_requests(server, tmp_path):
    questions = [qa_judge_messages(f"question {i} #retry-parse", "red", "red") for i in range(6)]
    questions.append(qa_judge_messages("question #malformed", "red", "red"))
    first = make_judge(server, tmp_path, concurrency=4)
    verdicts = first.map(lambda m: first.ask(m, parse_pred_score), questions)
    assert first.requests == 6 * 2 + 3
    again = make_judge(server, tmp_path)  # a rerun: same cache file
    before = server.requests
    replay = again.map(lambda m: again.ask(m, parse_pred_score), questions)
    assert server.requests == before and again.requests == 0
    assert [v.parsed for v in replay] == [v.parsed for v in verdicts]
    assert replay[-1].error == verdicts[-1].error and replay[-1].replies == verdicts[-1].replies
    other = make_judge(server, tmp_path, temperature=0.5)  # other parameters: a different cache slot
    other.ask(questions[0], parse_pred_score)
    assert other.requests == 2


def test_transport_gives_up(tmp_path):
    client = ChatClient("http://127.0.0.1:9", "m", timeout=0.2, retries=1, backoff=0.01)  # nothing listens
    with pytest.raises(ChatError, match="after 2 attempts"):
        client.complete([{"role": "user", "content": "hi"}])
    judge = Judge(client, JudgeCache(tmp_path / "c.sqlite"))
    with pytest.raises(JudgeUnavailable, match="--resume"):  # stop the run rather than record fake failures
        judge.ask([{"role": "user", "content": "hi"}])
    assert len(judge.cache) == 0  # errors are not cached
