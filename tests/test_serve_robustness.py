"""`aurora serve` under malformed and unbounded requests: every client mistake is a 400 in OpenAI's
schema (never a 500), generation is bounded by the model's context and the server's caps, vLLM's
continue_final_message / media_io_kwargs / frames-as-video work, and slots come back."""

from __future__ import annotations

import base64
import io
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import aurora  # noqa: E402
from aurora.serve import ServeSettings, create_app  # noqa: E402
from aurora.testing.media import make_frames, write_image, write_video  # noqa: E402
from tests.serve_helpers import running_app  # noqa: E402

CONTEXT = 2048  # the tiny test checkpoint's max_position_embeddings
MAX_VISUALS = 3


@pytest.fixture(scope="module")
def model(xtuner_ckpt):
    return aurora.load(str(xtuner_ckpt), device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust-media")
    write_video(root / "clip.mp4", make_frames(16, 64, 64), fps=8)
    write_image(root / "still.png", make_frames(1, 64, 64)[0])
    return root


@pytest.fixture(scope="module")
def http(model, folder, xtuner_ckpt):
    settings = ServeSettings(model=str(xtuner_ckpt), allowed_local_media_path=str(folder), max_concurrency=2,
                             max_queue=4, max_body_bytes=4 * 1024**2, max_visuals=MAX_VISUALS)
    with running_app(create_app(model, settings)) as url:
        with httpx.Client(base_url=url, trust_env=False, timeout=120) as client:
            yield client


def post(http, body=None, content=None):
    if content is not None:
        return http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    return http.post("/v1/chat/completions", json=body)


def error_of(response, status=400, param=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "\n" not in body["error"]["message"] and "Traceback" not in response.text
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]


def hi(**extra):
    return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}


def answered(http):
    response = post(http, hi())
    assert response.status_code == 200, response.text
    return response.json()


def test_deep_nesting_is_a_400_wherever_it_is(http):
    deep = b"[" * 100_000 + b"]" * 100_000  # past the JSON parser's recursion limit
    error_of(post(http, content=deep))
    ignored = b'{"messages": [{"role": "user", "content": "hi"}], "user": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    error_of(post(http, content=ignored))
    shallow_enough_to_parse = json.dumps({**hi(), "metadata": json.loads("[" * 500 + "]" * 500)})
    assert "nested deeper than 64" in error_of(post(http, content=shallow_enough_to_parse.encode()))["message"]
    answered(http)


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": {"a": 1}, "content": "hi"}]}, "messages[0].role"),
    (hi(seed=2**64), "seed"),
    (hi(seed=-(2**63) - 1), "seed"),
    (hi(max_tokens=10**9), "max_tokens"),
    (hi(max_tokens=10**30), "max_tokens"),
    (hi(max_completion_tokens=CONTEXT + 1), "max_tokens"),
    (hi(media_io_kwargs={"video": {"frames": 3}}), "media_io_kwargs"),
    (hi(media_io_kwargs={"video": 3}), "media_io_kwargs"),
    (hi(media_io_kwargs={"video": {"num_frames": 0}}), "media_io_kwargs.video.num_frames"),
])
def test_malformed_fields_are_400s_naming_the_field(http, body, param):
    error_of(post(http, body), param=param)


@pytest.mark.parametrize("url", ["clip\x00.mp4", "file:///tmp/a\x00b.mp4", "http://example.com/a\x00.mp4",
                                 "data:video/jpeg;base64,AAAA,BBBB"])
def test_nul_bytes_and_bad_frames_in_media_urls_are_400s(http, url):
    body = {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}]}]}
    error_of(post(http, body))


def test_prompt_longer_than_the_context_is_refused_before_prefill_in_vllm_words(http):
    long_text = "hi " * 100_000
    error = error_of(post(http, {"messages": [{"role": "user", "content": long_text}]}), param="messages")
    assert error["message"].startswith(f"This model's maximum context length is {CONTEXT} tokens. However, your "
                                       "request has ") and error["code"] == "context_length_exceeded"
    fits_alone = "hi " * 300  # ~900 tokens
    error = error_of(post(http, {"messages": [{"role": "user", "content": fits_alone}], "max_tokens": 1500}),
                     param="max_tokens")
    assert error["message"].startswith("'max_tokens' or 'max_completion_tokens' is too large: 1500.")
    # without max_tokens the default is shortened to what the context leaves
    reply = post(http, {"messages": [{"role": "user", "content": fits_alone}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["total_tokens"] <= CONTEXT
    answered(http)


def test_visuals_over_the_server_setting_are_refused_naming_it(http):
    parts = [{"type": "image_url", "image_url": {"url": "still.png"}}] * (MAX_VISUALS + 1)
    error = error_of(post(http, {"messages": [{"role": "user", "content": parts}]}), param="messages")
    assert "--max-visuals" in error["message"]
    ok = post(http, {"messages": [{"role": "user", "content": parts[:MAX_VISUALS]}], "max_tokens": 2})
    assert ok.status_code == 200, ok.text


def test_continue_final_message_as_vllm(http):
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "clip.mp4"}},
                                             {"type": "text", "text": "Which option?"}]},
                {"role": "assistant", "content": "Best option:("}]
    refused = error_of(post(http, {"messages": messages}))
    assert "continue_final_message" in refused["message"]
    both = {"messages": messages, "continue_final_message": True}  # add_generation_prompt defaults to true
    assert "Cannot set both" in error_of(post(http, both))["message"]
    ok = post(http, {"messages": messages, "continue_final_message": True, "add_generation_prompt": False,
                     "max_tokens": 3})
    assert ok.status_code == 200, ok.text
    error_of(post(http, {"messages": messages[:1], "continue_final_message": True, "add_generation_prompt": False}))


def _frames_url(count: int, fmt: str = "JPEG") -> str:
    from PIL import Image

    pieces = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(np.full((32, 48, 3), 40 * i, np.uint8)).save(buffer, fmt)
        pieces.append(base64.b64encode(buffer.getvalue()).decode())
    return f"data:video/{fmt.lower()};base64," + ",".join(pieces)


def test_media_io_kwargs_and_frames_as_video(http):
    video = {"type": "video_url", "video_url": {"url": "clip.mp4"}}
    body = {"messages": [{"role": "user", "content": [video]}], "max_tokens": 2,
            "media_io_kwargs": {"video": {"num_frames": 3}}}
    reply = post(http, body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["aurora"]["num_frames"] == [3]
    frames = {"type": "video_url", "video_url": {"url": _frames_url(5)}}
    reply = post(http, {"messages": [{"role": "user", "content": [frames]}], "max_tokens": 2})
    assert reply.status_code == 200, reply.text
    assert reply.json()["aurora"]["num_frames"] == [5]  # every frame, as vLLM uses them
    assert reply.json()["aurora"]["frame_indices"] == [[0, 1, 2, 3, 4]]
    png = {"type": "video_url", "video_url": {"url": _frames_url(2, "PNG")}}
    reply = post(http, {"messages": [{"role": "user", "content": [png]}], "max_tokens": 2, "num_frames": 2})
    assert reply.status_code == 200, reply.text


@pytest.mark.timeout(120)
def test_clients_leaving_during_prefill_do_not_hold_slots(http):
    body = {"messages": [{"role": "user", "content": "hi " * 600}], "max_tokens": 100}
    base = str(http.base_url).rstrip("/")
    for _ in range(2):  # as many as there are slots
        with httpx.Client(trust_env=False, timeout=0.05) as quick:
            with pytest.raises(httpx.TimeoutException):
                quick.post(base + "/v1/chat/completions", json=body)
    reply = answered(http)  # a normal request right after gets its answer
    assert reply["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.timeout(120)
def test_requests_past_the_timeout_are_stopped_with_a_504(model, xtuner_ckpt):
    settings = ServeSettings(model=str(xtuner_ckpt), request_timeout=0.3)
    # Each forward of the LM takes >= 20 ms, so an answer outlives the timeout whatever a fast machine
    # samples (an early end of text would otherwise finish it in time).
    slow = model.language_model.register_forward_pre_hook(lambda module, args: time.sleep(0.02))
    try:
        with running_app(create_app(model, settings)) as url:
            with httpx.Client(base_url=url, trust_env=False, timeout=60) as http:
                body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1800, "temperature": 1.0,
                        "seed": 1}
                error = error_of(post(http, body), status=504)
                assert error["code"] == "request_timeout" and "--request-timeout" in error["message"]
                with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
                    events = [line for line in response.iter_lines() if line.startswith("data: ")]
                assert events[-1] == "data: [DONE]" and "request_timeout" in events[-2]
                ok = post(http, {**body, "max_tokens": 2})
                assert ok.status_code == 200, ok.text
    finally:
        slow.remove()


def test_a_seed_beyond_64_bits_is_a_one_line_config_error_for_every_interface():
    from aurora.errors import ConfigError
    from aurora.generation import GenerationOptions

    with pytest.raises(ConfigError, match="64-bit"):
        GenerationOptions(seed=2**64)
    assert GenerationOptions(seed=2**63 - 1).seed == 2**63 - 1


def test_retry_after_follows_current_latency_not_history():
    from aurora.serve.scheduler import Busy, Scheduler

    scheduler = Scheduler(max_concurrency=1, max_queue=0)

    def retry_after():
        with pytest.raises(Busy) as busy:
            scheduler.admit()
        return busy.value.retry_after

    scheduler.admit()  # the one slot is taken
    for seconds in (20.0,) * 10:  # a slow period...
        scheduler._record(seconds)
    assert retry_after() == 40  # two waves of 20 s
    for seconds in (1.0,) * 5:  # ...then five fast generations: the slow ones no longer count
        scheduler._record(seconds)
    assert retry_after() == 2
    scheduler._started[0] = time.monotonic() - 30  # one running for 30 s now: latency is at least that
    scheduler._started[1] = time.monotonic() - 30
    scheduler._started[2] = time.monotonic() - 30
    assert retry_after() > 2
    scheduler.shutdown()


def test_idle_server_returns_freed_memory(monkeypatch):
    from aurora.serve import memory

    calls = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(1) or True)
    from aurora.serve.app import _Job

    class Ticket:
        scheduler = SimpleNamespace(admitted=0)
        released = False

        def release(self):
            self.released = True

    job = _Job.__new__(_Job)
    job.fetcher, job.ticket = SimpleNamespace(close=lambda: None), Ticket()
    job._release()
    assert job.ticket.released and calls == [1]
    assert memory.bound_arenas() in (True, False) and memory.release_free_memory() in (True, False)


@pytest.mark.timeout(120)
def test_mvbench_style_endpoint_evaluation_against_aurora_serve(model, folder, xtuner_ckpt):
    """What `aurora eval mvbench --endpoint` sends: 16 frames as images and a pre-filled answer
    continued with continue_final_message; and a video with its sampling in --endpoint-media video."""
    from aurora.eval.chat_client import ChatClient
    from aurora.eval.predictors import EndpointPredictor
    from aurora.eval.task import Query
    from aurora.generation import GenerationOptions

    settings = ServeSettings(model=str(xtuner_ckpt), allowed_local_media_path=str(folder))
    with running_app(create_app(model, settings)) as url:
        client = ChatClient(url + "/v1", str(xtuner_ckpt), retries=0)
        try:
            options = GenerationOptions(max_new_tokens=2)
            frames = EndpointPredictor(client, "frames", num_frames=16, options=options)
            answer = frames.answer([Query(str(folder / "clip.mp4"), "Which option?", prefix="Best option:(")])[0]
            assert isinstance(answer.text, str) and len(answer.info["frame_indices"]) == 16
            video = EndpointPredictor(client, "video", num_frames=3, options=options)
            assert isinstance(video.answer([Query(str(folder / "clip.mp4"), "What happens?")])[0].text, str)
        finally:
            client.close()
