"""`aurora serve`: the real openai client against the app on 127.0.0.1 with a tiny model, media
sources and their refusals, errors in OpenAI's schema, cancellation, and a burst of 50 requests."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import aurora  # noqa: E402
from aurora.errors import ConfigError, MediaError  # noqa: E402
from aurora.media import sources  # noqa: E402
from aurora.media.sources import MediaFetcher, SourcePolicy, is_public_address  # noqa: E402
from aurora.serve import ServeSettings, create_app  # noqa: E402
from aurora.testing.media import make_frames, write_image, write_text_file, write_video  # noqa: E402
from tests.serve_helpers import media_http_server, rss_bytes, running_app  # noqa: E402

KEY = "sk-test-key"
MAX_BODY = 256 * 1024
MAX_CONCURRENCY, MAX_QUEUE = 2, 4


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-media")
    allowed, outside = root / "allowed", root / "outside"
    allowed.mkdir()
    outside.mkdir()
    write_video(allowed / "clip.mp4", make_frames(16, 64, 64), fps=8)
    write_image(allowed / "still.png", make_frames(1, 64, 64)[0])
    write_video(outside / "secret.mp4", make_frames(16, 64, 64), fps=8)
    os.symlink(outside / "secret.mp4", allowed / "escape.mp4")
    os.symlink(outside, allowed / "escape_dir")
    write_text_file(allowed / "notes.mp4")
    return {"allowed": allowed, "outside": outside}


@pytest.fixture(scope="module")
def model(xtuner_ckpt):
    return aurora.load(str(xtuner_ckpt), device="cpu")


@pytest.fixture(scope="module")
def server(model, media, xtuner_ckpt):
    settings = ServeSettings(
        model=str(xtuner_ckpt), allowed_local_media_path=str(media["allowed"]), api_key=KEY,
        max_concurrency=MAX_CONCURRENCY, max_queue=MAX_QUEUE, max_body_bytes=MAX_BODY, media_timeout=5,
    )
    app = create_app(model, settings)
    with running_app(app) as url:
        yield {"url": url, "id": str(xtuner_ckpt), "app": app}


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(trust_env=False, timeout=60) as http:
        yield openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, http_client=http)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {KEY}"}, trust_env=False,
                      timeout=60) as c:
        yield c


def data_url(path, mime):
    return f"data:{mime};base64," + base64.b64encode(open(path, "rb").read()).decode()


def video_message(url, text="Describe the video.", kind="video_url"):
    return [{"role": "user", "content": [{"type": kind, kind: {"url": url}}, {"type": "text", "text": text}]}]


def assert_error(response, status, param=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text and "\n" not in body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


def assert_healthy(http):
    response = http.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# ---- the OpenAI API ---------------------------------------------------------------------------


def test_plain_text_and_models(client, server):
    assert [m.id for m in client.models.list().data] == [server["id"]]
    completion = client.chat.completions.create(model=server["id"], messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=5)
    assert completion.object == "chat.completion" and completion.model == server["id"]
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert 1 <= usage.completion_tokens <= 5 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    extension = completion.to_dict()["aurora"]
    assert extension["visual_tokens"] == 0 and set(extension["timings"]) >= {"queue", "prefill", "generate"}


def test_streaming_matches_the_plain_answer(client, server):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What happens?"}]
    plain = client.chat.completions.create(model=server["id"], messages=messages, max_tokens=8)
    chunks = list(client.chat.completions.create(model=server["id"], messages=messages, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == plain.choices[0].finish_reason
    assert finals[0].to_dict()["aurora"]["visual_tokens"] == 0
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    # without include_usage there is no usage chunk
    chunks = list(client.chat.completions.create(model=server["id"], messages=messages, max_tokens=3, stream=True))
    assert all(c.choices for c in chunks)


def test_image_data_url(client, server, media):
    url = data_url(media["allowed"] / "still.png", "image/png")
    completion = client.chat.completions.create(model=server["id"], messages=video_message(url, "What is it?", "image_url"),
                                                max_tokens=4)
    extension = completion.to_dict()["aurora"]
    assert extension["num_frames"] == [1] and extension["visual_tokens"] == extension["visual_tokens_per_frame"][0] > 0


def test_video_data_url_with_media_options(client, server, media, model):
    url = data_url(media["allowed"] / "clip.mp4", "video/mp4")
    completion = client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=4,
                                                extra_body={"num_frames": 3, "token_kept_ratio": 0.5})
    extension = completion.to_dict()["aurora"]
    per_frame = model.tower.tokens_per_frame(64, 64, 0.5)
    assert extension["frame_indices"] == [[0, 7, 15]] and extension["num_frames"] == [3]
    assert extension["visual_tokens_per_frame"] == [per_frame] and extension["visual_tokens"] == 3 * per_frame
    assert extension["token_kept_ratio"] == 0.5
    assert completion.usage.prompt_tokens > 3 * per_frame
    # vLLM's spelling, inside mm_processor_kwargs; the preset's ratio when none is given
    completion = client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=2,
                                                extra_body={"mm_processor_kwargs": {"num_frames": 2}})
    extension = completion.to_dict()["aurora"]
    assert extension["frame_indices"] == [[0, 15]]
    assert extension["visual_tokens_per_frame"] == [model.tower.tokens_per_frame(64, 64, model.preset.reducer.token_kept_ratio)]


def test_a_request_chooses_its_reduction(client, http, server, media, model, monkeypatch):
    """`reduction` in the body reduces that request only; the answer says which method ran."""
    url = data_url(media["allowed"] / "clip.mp4", "video/mp4")
    completion = client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=2,
                                                extra_body={"num_frames": 4, "token_kept_ratio": 0.05,
                                                            "reduction": "both"})
    extension = completion.to_dict()["aurora"]
    assert extension["reduction"] == "both" and extension["visual_tokens"] == round(0.05 * 4 * 64)
    completion = client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=2,
                                                extra_body={"num_frames": 4, "token_kept_ratio": 0.25,
                                                            "mm_processor_kwargs": {"reduction": "temporal"}})
    extension = completion.to_dict()["aurora"]
    assert extension["reduction"] == "temporal" and extension["visual_tokens"] == round(0.25 * 4 * 64)
    completion = client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=2,
                                                extra_body={"num_frames": 4, "token_kept_ratio": 0.05})
    extension = completion.to_dict()["aurora"]  # the server's method again: ToMe stops at its floor
    assert extension["reduction"] == "tome" and extension["visual_tokens"] == 4 * model.tower.tokens_per_frame(64, 64, 0.05)
    assert model.reduction == "tome"
    monkeypatch.setattr("aurora.models.video_llm.VideoLLM.reductions", ("tome",))  # a model without it: 400, named
    response = http.post("/v1/chat/completions", json={"messages": video_message(url), "reduction": "both"})
    assert_error(response, 400, "reduction")
    assert "reduction 'both' is not implemented for auroracap models" in response.json()["error"]["message"]


@pytest.mark.parametrize("reference", ["file://{allowed}/clip.mp4", "{allowed}/clip.mp4", "clip.mp4"])
def test_video_from_an_allowed_local_path(client, server, media, reference):
    url = reference.format(allowed=media["allowed"])
    completion = client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=2,
                                                extra_body={"num_frames": 4})
    assert completion.to_dict()["aurora"]["num_frames"] == [4]


def test_model_may_be_omitted_but_not_wrong(http, client, server):
    response = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert response.status_code == 200 and response.json()["model"] == server["id"]
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"


# ---- refusals: media sources --------------------------------------------------------------------


@pytest.mark.parametrize("reference", [
    "{outside}/secret.mp4",  # outside the allowed directory
    "file://{outside}/secret.mp4",
    "{allowed}/../outside/secret.mp4",  # .. out of it
    "../outside/secret.mp4",
    "escape.mp4",  # a symlink inside pointing outside
    "{allowed}/escape_dir/secret.mp4",  # through a symlinked directory
    "file:///etc/passwd",
])
def test_local_paths_outside_the_allowed_directory_are_refused(http, media, reference):
    url = reference.format(allowed=media["allowed"], outside=media["outside"])
    response = http.post("/v1/chat/completions", json={"messages": video_message(url)})
    error = assert_error(response, 400, param="messages[0].content[0].video_url.url")
    assert "outside the allowed media directory" in error["message"]
    assert_healthy(http)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "localhost", "[::1]", "0.0.0.0",
                                  "224.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "100.64.0.1", "192.168.1.1"])
def test_private_media_urls_are_refused_without_connecting(http, monkeypatch, host):
    attempts = []
    monkeypatch.setattr(sources, "_pinned_connection", lambda *a, **k: attempts.append(a) or pytest.fail("connected"))
    with socket.socket() as listener:  # a real local port too: any connection would show as an accept
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        response = http.post("/v1/chat/completions", json={"messages": video_message(f"http://{host}:{port}/clip.mp4")})
        error = assert_error(response, 400, param="messages[0].content[0].video_url.url")
        assert "non-public address" in error["message"]
        with pytest.raises(socket.timeout):
            listener.accept()
    assert attempts == []
    assert_healthy(http)


def test_a_host_with_any_private_address_is_refused(monkeypatch):
    monkeypatch.setattr(sources, "_resolve", lambda host, port, timeout: ["93.184.215.14", "10.0.0.7"])
    monkeypatch.setattr(sources, "_pinned_connection", lambda *a, **k: pytest.fail("connected"))
    with MediaFetcher(SourcePolicy()) as fetcher, pytest.raises(MediaError, match="non-public"):
        fetcher.fetch("https://media.example/clip.mp4")


def test_public_address_rules():
    for address in ("8.8.8.8", "2606:4700:4700::1111"):
        assert is_public_address(address)
    for address in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.1.1", "100.64.0.1", "0.0.0.0",
                    "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
                    "::ffff:10.0.0.1", "2002:0a00:0001::1"):
        assert not is_public_address(address), address


def test_http_fetch_is_pinned_capped_timed_and_cleaned_up(media, monkeypatch):
    clip = (media["allowed"] / "clip.mp4").read_bytes()
    routes = {"/clip.mp4": ("video/mp4", clip, 0), "/big": ("video/mp4", b"x" * 50_000, 0),
              "/slow.mp4": ("video/mp4", clip, 2.0), "/page": ("text/html", b"<html></html>", 0)}
    with media_http_server(routes) as (port, handler):
        # the name resolves once, to the checked address; the request still names the host
        monkeypatch.setattr(sources, "_resolve", lambda host, p, timeout: ["127.0.0.1"])
        policy = SourcePolicy(allow_private_urls=True, max_bytes=20_000, timeout=0.5)
        fetcher = MediaFetcher(policy)
        path = fetcher.fetch(f"http://media.example:{port}/clip.mp4")
        assert open(path, "rb").read() == clip and path.endswith(".mp4")
        assert handler.seen[-1] == ("/clip.mp4", f"media.example:{port}")
        with pytest.raises(MediaError, match="larger than 20000 bytes"):
            fetcher.fetch(f"http://media.example:{port}/big")
        with pytest.raises(MediaError, match="timed out"):
            fetcher.fetch(f"http://media.example:{port}/slow.mp4")
        with pytest.raises(MediaError, match="unsupported type"):
            fetcher.fetch(f"http://media.example:{port}/page")
        fetcher.close()
        assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_data_urls_are_checked(http):
    for url, expected in [("data:video/mp4;base64,@@@", "does not decode"),
                          ("data:application/x-sh;base64,ZWNobw==", "unsupported media type"),
                          ("data:video/mp4;base64," + base64.b64encode(b"not a video").decode(), "cannot")]:
        response = http.post("/v1/chat/completions", json={"messages": video_message(url)})
        assert expected in assert_error(response, 400)["message"]


def test_request_temp_files_are_deleted(client, server, media, monkeypatch):
    made = []
    real = MediaFetcher._new_file

    def record(self, extension):
        made.append(real(self, extension))
        return made[-1]

    monkeypatch.setattr(MediaFetcher, "_new_file", record)
    url = data_url(media["allowed"] / "clip.mp4", "video/mp4")
    client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=2)
    list(client.chat.completions.create(model=server["id"], messages=video_message(url), max_tokens=2, stream=True))
    deadline = time.monotonic() + 5
    while any(os.path.exists(p) for p in made) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(made) == 2 and not any(os.path.exists(p) for p in made)


# ---- refusals: HTTP -----------------------------------------------------------------------------


def test_bad_requests_get_openai_errors(http, server, media):
    cases = [
        (dict(content=b'{"messages": [', headers={"content-type": "application/json"}), 400, None),
        (dict(content=b'{"messages": NaN}', headers={"content-type": "application/json"}), 400, None),
        (dict(content=b"messages=hi", headers={"content-type": "application/x-www-form-urlencoded"}), 400, None),
        (dict(content=b"{}", headers={"content-type": "text/plain"}), 400, None),
        (dict(json=[1, 2]), 400, None),
        (dict(json={"messages": []}), 400, "messages"),
        (dict(json={"messages": [{"role": "tool", "content": "x"}]}), 400, "messages[0].role"),
        (dict(json={"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}), 400, "messages[0].content[0].type"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "num_frames": 0}), 400, "num_frames"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "token_kept_ratio": 1.5}), 400, "token_kept_ratio"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "reduction": "pool"}), 400, "reduction"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "mm_processor_kwargs": {"reduction": 1}}), 400,
         "mm_processor_kwargs.reduction"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "mm_processor_kwargs": {"frames": 2}}), 400, "mm_processor_kwargs"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "num_frames": 2,
                    "mm_processor_kwargs": {"num_frames": 3}}), 400, "num_frames"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "temperature": -1}), 400, "temperature"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "top_p": 0}), 400, "top_p"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}), 400, "max_tokens"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "n": 2}), 400, "n"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "stop": [""]}), 400, "stop"),
        (dict(json={"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}), 400, "stream"),
        (dict(json={"messages": [{"role": "user", "content": "a <image> tag"}]}), 400, None),
        (dict(json={"messages": video_message("notes.mp4")}), 400, "messages[0].content[0].video_url.url"),
        (dict(json={"messages": video_message("ftp://example.com/clip.mp4")}), 400, None),
    ]
    for kwargs, status, param in cases:
        assert_error(http.post("/v1/chat/completions", **kwargs), status, param)
    assert_error(http.get("/v1/nothing"), 404)
    assert_error(http.get("/v1/chat/completions"), 405)
    assert_healthy(http)


def test_oversize_bodies_get_413(http, server):
    big = {"messages": video_message("data:video/mp4;base64," + "A" * (MAX_BODY + 10))}
    assert assert_error(http.post("/v1/chat/completions", json=big), 413)["code"] == "request_too_large"

    def chunked():  # no Content-Length: counted while reading
        yield b'{"messages": "'
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"A" * 65536
        yield b'"}'

    response = http.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert_error(response, 413)
    assert_healthy(http)


def test_api_key_is_required(server, http):
    with httpx.Client(trust_env=False) as plain:
        bad = openai.OpenAI(base_url=server["url"] + "/v1", api_key="wrong", max_retries=0, http_client=plain)
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(model=server["id"], messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        assert_error(plain.post(server["url"] + "/v1/chat/completions", json=body), 401)  # no key at all
        assert_error(plain.post(server["url"] + "/v1/chat/completions", json=body,
                                headers={"Authorization": f"Basic {KEY}"}), 401)
        assert_error(plain.get(server["url"] + "/v1/models"), 401)
        assert plain.get(server["url"] + "/health").status_code == 200  # probes need no key
    assert_healthy(http)


# ---- cancellation, load, metrics ----------------------------------------------------------------


def wait_idle(http, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = http.get("/health").json()
        if health["running"] == 0 and health["queued"] == 0:
            return True
        time.sleep(0.05)
    return False


def cancelled_count(http) -> int:
    line = next(line for line in http.get("/metrics").text.splitlines() if line.startswith("aurora_cancelled_total"))
    return int(line.split()[1])


@pytest.mark.timeout(60)
def test_a_client_that_leaves_cancels_its_generation(http, server):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1800}
    before = cancelled_count(http)
    # streaming: read the first chunks, then hang up
    with httpx.Client(trust_env=False, headers={"Authorization": f"Bearer {KEY}"}) as c:
        with c.stream("POST", server["url"] + "/v1/chat/completions", json={**body, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
    assert wait_idle(http), "the streamed generation kept running after the client left"
    # non-streaming: the client gives up after a short timeout
    with httpx.Client(trust_env=False, headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post(server["url"] + "/v1/chat/completions", json=body)
    assert wait_idle(http), "the generation kept running after the client left"
    assert cancelled_count(http) == before + 2
    assert_healthy(http)


@pytest.mark.timeout(120)
def test_fifty_concurrent_requests_are_answered_or_refused(server, media, http):
    url = data_url(media["allowed"] / "clip.mp4", "video/mp4")

    async def burst():
        async with httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=60)) as http_client:
            client = openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=30,
                                        http_client=http_client)

            async def one(i):
                messages = video_message(url) if i % 2 else [{"role": "user", "content": f"hello {i}"}]
                try:
                    if i % 3 == 0:
                        stream = await client.chat.completions.create(model=server["id"], messages=messages,
                                                                      max_tokens=4, stream=True)
                        return 200 if [c async for c in stream] else "empty"
                    await client.chat.completions.create(model=server["id"], messages=messages, max_tokens=4,
                                                         extra_body={"num_frames": 2})
                    return 200
                except openai.APIStatusError as e:
                    assert e.response.headers.get("retry-after", "").isdigit()
                    assert e.body["type"] == "server_overloaded"
                    return e.status_code

            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), timeout=45)

    for _ in range(3):  # warm up, then measure memory against this baseline
        asyncio.run(burst())
    gc.collect()
    baseline = rss_bytes()
    statuses = asyncio.run(burst())
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= MAX_CONCURRENCY + MAX_QUEUE - 1  # the admitted ones are answered
    assert statuses.count(503) > 0
    assert wait_idle(http)
    for _ in range(2):
        asyncio.run(burst())
    gc.collect()
    assert rss_bytes() - baseline < 64 * 1024**2, "memory kept growing across bursts"
    assert_healthy(http)
    metrics = http.get("/metrics").text
    assert 'aurora_requests_total{path="/v1/chat/completions",status="503"}' in metrics
    assert "aurora_request_duration_seconds_bucket" in metrics and "aurora_queue_depth 0" in metrics
    generated = next(l for l in metrics.splitlines() if l.startswith("aurora_generated_tokens_total"))
    assert int(generated.split()[1]) > 0


def test_settings_are_validated(tmp_path):
    from aurora.errors import ConfigError

    with pytest.raises(ConfigError):
        ServeSettings(model="m", allowed_local_media_path=str(tmp_path / "missing"))
    with pytest.raises(ConfigError):
        ServeSettings(model="m", max_concurrency=0)
    assert ServeSettings(model="m").host == "127.0.0.1"


def test_cli_flags_build_the_settings(monkeypatch, tmp_path):
    import argparse

    from aurora.serve import cli

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", "m", "--port", "9001", "--allowed-local-media-path", str(tmp_path),
                              "--max-concurrency", "3", "--max-queue", "0", "--api-key", "k", "--allow-private-media-urls"])
    seen = {}
    monkeypatch.setattr("aurora.serve.server.serve", lambda settings: seen.setdefault("settings", settings))
    assert args.run(args) == 0
    settings = seen["settings"]
    assert (settings.port, settings.max_concurrency, settings.max_queue, settings.api_key) == (9001, 3, 0, "k")
    assert settings.allow_private_media_urls and settings.host == "127.0.0.1" and settings.reduction is None
    args = parser.parse_args(["gui"])
    assert args.host == "127.0.0.1" and args.model is None


def test_serve_and_gui_reduce_as_reduction_says(monkeypatch, capsys):
    """`--reduction` sets the reducer method for every request of the server and the browser app;
    a method the model does not implement is a one-line error before anything is served."""
    import argparse

    from aurora.cli import main
    from aurora.serve import cli
    from aurora.serve.gui import ModelCache

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    served = {}
    monkeypatch.setattr("aurora.serve.app.create_app", lambda model, settings: served.setdefault("model", model))
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: None)
    args = parser.parse_args(["serve", "--device", "cpu", "--reduction", "reuse"])
    assert args.run(args) == 0 and served["model"].preset.reducer.method == "reuse"
    monkeypatch.setattr("aurora.serve.gui.launch_gui", lambda model, host, port, **kw: served.setdefault("gui", kw))
    args = parser.parse_args(["gui", "--device", "cpu", "--reduction", "both"])
    assert args.run(args) == 0
    assert ModelCache(None, None, **served["gui"]).get(str(aurora.models.DEFAULT_MODEL)).preset.reducer.method == "both"
    with pytest.raises(ConfigError, match="reduction must be one of"):
        ServeSettings(model="m", reduction="pool")
    monkeypatch.setattr("aurora.models.video_llm.VideoLLM.reductions", ("tome",))
    assert main(["serve", "--device", "cpu", "--reduction", "reuse"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reduction 'reuse' is not implemented for auroracap models: use tome" in err


def test_visual_tokens_are_what_reached_the_language_model():
    from aurora.models.reply import Reply
    from aurora.serve.protocol import aurora_extension

    # one pooled block for a 4-frame video (PLLaVA, Video-LLaMA): 32 tokens, not 4 x 32
    pooled = Reply(text="", model="m", frame_indices=[[0, 1, 2, 3]], visual_tokens_per_frame=[32],
                   visual_tokens=[{"patches": 256, "encoder": 256, "language_model": 32}])
    assert aurora_extension(pooled, 1.0, {})["visual_tokens"] == 32
    per_frame = Reply(text="", model="m", frame_indices=[[0, 1, 2]], visual_tokens_per_frame=[5])  # no stage counts
    assert aurora_extension(per_frame, 1.0, {})["visual_tokens"] == 15
