"""The HTTP API: an OpenAI-compatible chat-completions server over one loaded `VideoLLM`.

    POST /v1/chat/completions   OpenAI schema (+ num_frames / fps / token_kept_ratio / reduction, + `aurora` in answers)
    GET  /v1/models             the served model
    GET  /health                {"status": "ok", ...}
    GET  /metrics               Prometheus text format

One chat request goes: auth -> content type and size -> admission (503 when full) -> body parsed and
validated (`protocol`) -> media fetched into temp files (`aurora.media.sources`, in a thread) -> wait
for a generation slot (`scheduler`) -> frames decoded and the answer generated in a worker thread,
text deltas handed to the event loop through a queue -> JSON or server-sent events. While it waits
or generates, a client that disconnects sets the request's cancel event, which stops the model at
its next token; temp files are deleted once the worker is done with them.

Bounds: prompt + max_tokens must fit the model's context (checked after the prompt is embedded,
before prefill; refused with vLLM's wording), max_tokens at most --max-tokens (default: the
context), at most --max-visuals images and videos, and --request-timeout seconds per request
(the model is stopped at its next token, the client gets a 504).

Decisions: `model` may be omitted (there is one model); when given it must be the served id (the
--model string, as /v1/models lists it), the loaded model's name or the checkpoint's directory name,
else 404. /health and /metrics need no API key (probes and scrapers); /v1/* do when one is set.
Errors use OpenAI's schema; a client that hung up is logged as 499. Concurrent requests are not
batched: each generation runs alone in its worker thread (the model has no batched generation yet).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace

import torch

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aurora.errors import AuroraError
from aurora.generation import GenerationOptions
from aurora.media.sources import MediaFetcher, SourcePolicy
from aurora.serve import memory, protocol
from aurora.serve.errors import STATUS_TYPES, APIError, bad_request, from_exception
from aurora.serve.metrics import Metrics, MetricsMiddleware
from aurora.serve.protocol import MediaRef
from aurora.serve.scheduler import Busy, Scheduler
from aurora.serve.settings import ServeSettings

log = logging.getLogger("aurora.serve")
DISCONNECT_POLL = 0.1  # seconds between checks that the client is still there


def create_app(model, settings: ServeSettings) -> FastAPI:
    """A FastAPI app serving `model` (a loaded VideoLLM) under `settings`."""
    memory.bound_arenas()  # freed memory returns to the system after a burst (see serve/memory.py)
    scheduler = Scheduler(settings.max_concurrency, settings.max_queue)
    metrics = Metrics()
    policy = settings.media_policy()
    model_id = settings.model
    model_ids = {model_id, str(getattr(model, "name", model_id)), os.path.basename(model_id.rstrip("/\\"))}
    started = protocol.now()
    context = context_length(model)
    max_tokens = settings.max_tokens or context

    @asynccontextmanager
    async def lifespan(_app):
        yield
        scheduler.shutdown()

    app = FastAPI(title="Aurora", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.scheduler, app.state.metrics = scheduler, metrics

    @app.exception_handler(APIError)
    async def api_error(_request, error: APIError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(Busy)
    async def busy(_request, error: Busy):
        message = "the server is busy (all generation slots and queue places are taken); retry later"
        return JSONResponse(APIError(503, message, type="server_overloaded", code="server_busy").body(),
                            status_code=503, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, error: StarletteHTTPException):
        kind = STATUS_TYPES.get(error.status_code, "invalid_request_error")
        return JSONResponse(APIError(error.status_code, str(error.detail), type=kind).body(),
                            status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request, error: Exception):
        log.exception("unexpected error while serving a request")
        api = from_exception(error)
        return JSONResponse(api.body(), status_code=api.status)

    async def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer KEY'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id, "running": scheduler.running, "queued": scheduler.waiting}

    @app.get("/metrics")
    async def metrics_text():
        return PlainTextResponse(metrics.render(scheduler.waiting, scheduler.running),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models():
        card = {"id": model_id, "object": "model", "created": started, "owned_by": "aurora"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)])
    async def chat_completions(request: Request):
        _check_content_type(request)
        _check_declared_length(request, settings.max_body_bytes)
        job = _Job(model, scheduler.admit(), policy, metrics, context, settings.request_timeout)  # Busy -> 503
        try:
            body = await _read_json(request, settings.max_body_bytes)
            chat = protocol.parse_chat_request(body, max_visuals=settings.max_visuals,
                                               audio="audio" in getattr(model, "part_kinds", ()))
            if chat.model is not None and chat.model not in model_ids:
                raise protocol.model_not_found(chat.model)
            GenerationOptions(**chat.generation)  # ConfigError -> 400 now, not mid-stream
            if "reduction" in chat.media:  # a method this model does not implement: 400 now, naming the field
                _check_reduction(model, chat.media["reduction"])
            requested = chat.generation.get("max_new_tokens")
            if max_tokens is not None and requested is not None and requested > max_tokens:
                raise APIError(400, f"max_tokens is too large: {requested}; this server allows at most {max_tokens} "
                                    f"(the model's context is {context} tokens)", param="max_tokens")
            await job.start(request, chat)
            first = await job.watch(request, job.events.get())  # first delta, the answer, or an error
            if first[0] == "error":
                raise first[1]
            if chat.stream:
                stream = _EventStream(job.sse(first, model_id, chat.include_usage), on_close=job.finish)
                job = None  # the stream owns it now
                return stream
            while first[0] != "done":
                first = await job.watch(request, job.events.get())
                if first[0] == "error":
                    raise first[1]
            reply = first[1]
            return JSONResponse(protocol.completion(job.id, job.created, model_id, reply, job.extension(reply)))
        except BaseException as error:
            if isinstance(error, Exception) and not isinstance(error, (APIError, Busy)):
                api = from_exception(error)
                if api.status == 500:
                    log.error("chat completion failed", exc_info=error)
                raise api from None
            raise
        finally:
            if job is not None:
                job.finish()

    return app


class _Job:
    """One chat request's resources: admission ticket, cancel event, media temp files, worker."""

    def __init__(self, model, ticket, policy: SourcePolicy, metrics: Metrics, context: int | None = None,
                 timeout: float | None = None):
        self.model, self.ticket, self.metrics = model, ticket, metrics
        self.context, self.timeout = context, timeout
        self.deadline = time.monotonic() + timeout if timeout else None
        self.cancel = threading.Event()
        self.fetcher = MediaFetcher(policy, cancel=self.cancel)
        self.events: asyncio.Queue = asyncio.Queue()  # ("delta", str) | ("done", Reply) | ("error", exc)
        self.pending: list = []  # concurrent futures still using the temp files / the model
        self.timings: dict[str, float] = {}
        self.id, self.created = protocol.completion_id(), protocol.now()
        self.token_kept_ratio = model.preset.reducer.token_kept_ratio
        self.finished = False

    async def start(self, request: Request, chat: protocol.ChatRequest) -> None:
        """Fetch the media (in a thread), wait for a slot, start the worker."""
        self.token_kept_ratio = chat.media.get("token_kept_ratio", self.token_kept_ratio)
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        refs = chat.media_refs
        if refs:
            fetch = loop.run_in_executor(None, lambda: {id(ref): self._fetch(ref) for ref in refs})
            self.pending.append(fetch)
            paths = await self.watch(request, asyncio.shield(fetch))
        else:
            paths = {}
        self.timings["fetch"] = time.perf_counter() - start
        start = time.perf_counter()
        future = await self.watch(request, self.ticket.run(lambda: self._work(chat, paths, loop), self.cancel))
        self.pending.append(future)
        self.timings["queue"] = time.perf_counter() - start

    def _fetch(self, ref: MediaRef) -> str:
        with _pointing_at(ref):
            return self.fetcher.fetch(ref.url)

    def _decode(self, ref: MediaRef, path: str, options: dict):
        with _pointing_at(ref):
            num_frames = options.get("num_frames") or ref.frames  # frames-as-video: all of them by default
            return self.model.load_frames(path, num_frames=num_frames, fps=options.get("fps"))

    def _work(self, chat: protocol.ChatRequest, paths: dict, loop) -> None:
        """In a worker thread: decode the frames, generate, hand deltas and the reply to the loop."""

        def emit(item):
            try:
                loop.call_soon_threadsafe(self.events.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening
                pass

        try:
            start = time.perf_counter()
            messages = []
            for message in chat.messages:
                content = []
                for part in message["content"]:
                    if isinstance(part, MediaRef):
                        frames = self._decode(part, paths[id(part)], chat.media)
                        content.append({"type": part.kind, part.kind: frames})
                    else:
                        content.append({"type": "text", "text": part[1]})
                messages.append({"role": message["role"], "content": content})
            decode = time.perf_counter() - start
            reply = self._respond(messages, chat, (lambda delta: emit(("delta", delta))) if chat.stream else None)
            reply.timings["decode"] = round(reply.timings.get("decode", 0.0) + decode, 6)
            self.metrics.observe_reply(reply)
            emit(("done", reply))
        except BaseException as e:  # handed to the request's coroutine
            emit(("error", e))

    @torch.inference_mode()
    def _respond(self, messages: list[dict], chat: protocol.ChatRequest, on_text):
        """`ChatModel.respond_batch` for one conversation, with the context checked between embedding
        the prompt and prefill, so an over-long request never reaches the language model."""
        model = self.model
        options = GenerationOptions(**chat.generation)
        options = replace(options, stop=tuple(options.stop) + tuple(model.template.stop))
        row, reply = model.prepare_reduced(messages, token_kept_ratio=chat.media.get("token_kept_ratio"),
                                           reduction=chat.media.get("reduction"))  # this request's; others keep theirs
        max_new = check_context(reply.prompt_tokens, options.max_new_tokens, model.preset.generation.max_new_tokens,
                                self.context)
        options = replace(options, max_new_tokens=max_new)
        if self.cancel.is_set():
            raise APIError(499, "client closed the request", code="client_closed_request")
        start = time.perf_counter()
        results, first = model.generator(model.collate([row]), options, on_text, self.cancel)
        end = time.perf_counter()
        reply.text, reply.generated_tokens, reply.finish_reason = results[0]
        model.annotate([reply])
        reply.timings["prefill"] = (first - start) if first else end - start
        reply.timings["generate"] = (end - first) if first else 0.0
        reply.timings = {k: round(v, 6) for k, v in reply.timings.items()}
        return reply

    def timed_out(self) -> APIError:
        self.cancel.set()
        return APIError(504, f"the request took longer than this server's limit of {self.timeout:g} s "
                             f"(--request-timeout); ask for fewer tokens or frames", type="timeout",
                        code="request_timeout")

    async def watch(self, request: Request, awaitable):
        """Await `awaitable`, polling for a client disconnect (cancel, 499) and the deadline (504)."""
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL)
                if done:
                    return task.result()
                if await request.is_disconnected():
                    self.cancel.set()
                    raise APIError(499, "client closed the request", code="client_closed_request")
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise self.timed_out()
        finally:
            if not task.done():
                task.cancel()

    def extension(self, reply) -> dict:
        return protocol.aurora_extension(reply, self.token_kept_ratio, self.timings)

    async def sse(self, first, model_id: str, include_usage: bool):
        """Server-sent events in OpenAI's chunk format: role, content deltas, finish, [usage], [DONE]."""

        def event(payload: dict) -> str:
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        def chunk(delta, finish=None, **extra):
            return event(protocol.chunk(self.id, self.created, model_id, delta, finish, include_usage, **extra))

        yield chunk({"role": "assistant", "content": ""})
        kind, value = first
        while True:
            if kind == "delta":
                yield chunk({"content": value})
            elif kind == "done":
                yield chunk({}, protocol.finish_reason(value), aurora=self.extension(value))
                if include_usage:
                    yield chunk(None, usage=protocol.usage(value))
                break
            else:  # an error after the first token: OpenAI's in-stream error object
                api = from_exception(value)
                if api.status == 500:
                    log.error("streamed chat completion failed", exc_info=value)
                yield event(api.body())
                break
            try:
                remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
                kind, value = await asyncio.wait_for(self.events.get(), remaining)
            except asyncio.TimeoutError:
                kind, value = "error", self.timed_out()
        yield "data: [DONE]\n\n"

    def finish(self) -> None:
        """Stop the model if it still runs; free the slot and temp files once nothing uses them."""
        if self.finished:
            return
        self.finished = True
        self.cancel.set()  # a no-op for a finished generation
        running = [f for f in self.pending if not f.done()]
        if not running:
            self._release()
            return
        remaining = len(running)

        def one_done(_):
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                self._release()

        for future in running:
            future.add_done_callback(one_done)

    def _release(self) -> None:
        self.fetcher.close()
        self.ticket.release()
        if self.ticket.scheduler.admitted == 0:  # idle: give freed memory back
            memory.release_free_memory()


def _check_reduction(model, method: str) -> None:
    try:
        model.check_reduction(method)
    except AuroraError as e:
        raise APIError(400, str(e), param="reduction") from None


@contextmanager
def _pointing_at(ref: MediaRef):
    """User mistakes about one media part become 400s whose `param` names that part."""
    try:
        yield
    except AuroraError as e:
        api = from_exception(e)
        api.param = ref.param
        raise api from None


class _EventStream(StreamingResponse):
    """A server-sent-events response that always runs `on_close`, even if never iterated."""

    def __init__(self, content, on_close):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _check_content_type(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise bad_request(f"Content-Type must be application/json, got {kind or '(none)'!r}", code="unsupported_content_type")


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes; send big media by URL",
                    code="request_too_large", headers={"Connection": "close"})


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise bad_request("invalid Content-Length header")
    if int(declared) > limit:
        raise _too_large(limit)


async def _read_json(request: Request, limit: int) -> object:
    chunks, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise _too_large(limit)
        chunks.append(piece)
    body = b"".join(chunks)
    try:
        if size > 1 << 20:  # big bodies (data URLs) are parsed off the event loop
            return await asyncio.to_thread(json.loads, body, parse_constant=_no_constants)
        return json.loads(body, parse_constant=_no_constants)
    except RecursionError:
        raise bad_request(f"the request JSON is nested deeper than {protocol.MAX_DEPTH} levels", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"the request body is not valid JSON ({str(e).splitlines()[0]})", code="invalid_json") from None


def context_length(model) -> int | None:
    """The language model's positions (max_position_embeddings), None when it states none."""
    value = getattr(model, "context_length", None)
    return value if isinstance(value, int) and value > 0 else None


def check_context(prompt_tokens: int, requested: int | None, default: int, context: int | None) -> int:
    """The max_new_tokens to generate with, or a 400 in vLLM's words when the request cannot fit.

    Without max_tokens the preset's default is used, shortened to what the context leaves."""
    if context is None:
        return requested or default
    if prompt_tokens >= context:
        raise APIError(400, f"This model's maximum context length is {context} tokens. However, your request has "
                            f"{prompt_tokens} input tokens. Please reduce the length of the input messages.",
                       param="messages", code="context_length_exceeded")
    if requested is None:
        return min(default, context - prompt_tokens)
    if prompt_tokens + requested > context:
        raise APIError(400, f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's maximum "
                            f"context length is {context} tokens and your request has {prompt_tokens} input tokens "
                            f"({requested} > {context} - {prompt_tokens}).", param="max_tokens",
                       code="context_length_exceeded")
    return requested


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")
