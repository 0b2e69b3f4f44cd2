"""The judge: an LLM behind any OpenAI-compatible endpoint that grades answers, cached on disk.

`Judge.ask(messages, parse)` sends one chat request (temperature 0 unless told otherwise) and runs
`parse` on the reply. A reply that does not parse is asked again, up to `parse_attempts` times in
all; after that the verdict is a recorded parse failure (the raw replies are kept). Every reply is
cached in SQLite under the hash of (messages, model, parameters, attempt number), so a rerun — or a
resumed run — replays the same replies, parse failures included, without a single request. HTTP
errors are retried by the transport (`chat_client`) and never cached.

Published judges reply with a Python dict (`{'pred': 'yes', 'score': 4}`), read with
`ast.literal_eval` of the whole reply; `literal_dict` does that and, when it fails, reads the first
`{...}` in the reply instead (chat models often wrap the dict in prose or a code fence). The AST
constructor is not thread-safe on CPython 3.11-3.12 (gh-106905: "SystemError: AST constructor
recursion depth mismatch" when threads parse at once), so parsing holds a lock, and a parser that
raises anything counts as an unparsed reply: one bad reply never stops a run.

Identical requests in flight at once (two items asking the same question, a resumed shard) are
sent once: the others wait for that reply and share it.

A judge that stays unreachable (timeouts, 429, 5xx after every retry) stops the run with
`JudgeUnavailable` instead of recording failures that a healthy judge would not have produced;
items scored so far are kept, and `--resume` continues. A request the judge refuses (4xx) is
recorded as a failed verdict.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aurora.errors import AuroraError
from aurora.eval.chat_client import ChatClient, ChatError

PARSE_RULE = ("ast.literal_eval of the whole reply, else of the first {...} in it (one thread at a time: "
              "CPython gh-106905); unparsable replies are asked again (new cache slot), then recorded as "
              "failures")
MAX_PARSED_CHARS = 20_000  # longer replies are not handed to the parser (no published reply is near it)
_AST_LOCK = threading.Lock()


class JudgeUnavailable(AuroraError):
    """The judge could not be reached after every retry; rerun with --resume later."""


@dataclass
class Verdict:
    """What the judge said about one request."""

    parsed: Any = None  # the parser's result; None when it failed
    replies: list[str] = field(default_factory=list)  # every raw reply, one per attempt
    error: str | None = None  # why there is no parsed result
    requests: int = 0  # HTTP requests this verdict cost (0 = all from the cache)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"replies": self.replies, "error": self.error}


class JudgeCache:
    """reply text by request hash, in SQLite (safe across threads and processes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=120, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL, "
                             "model TEXT, created REAL)")

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, reply: str, model: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", (key, reply, model, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def request_key(messages: list[dict], model: str, params: dict, attempt: int) -> str:
    payload = json.dumps({"messages": messages, "model": model, "params": params, "attempt": attempt},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class Judge:
    def __init__(self, client: ChatClient, cache: JudgeCache, temperature: float = 0.0,
                 max_tokens: int | None = None, concurrency: int = 8, parse_attempts: int = 3):
        self.client, self.cache = client, cache
        self.temperature, self.max_tokens = temperature, max_tokens
        self.concurrency, self.parse_attempts = max(1, concurrency), max(1, parse_attempts)
        self._slots = threading.BoundedSemaphore(self.concurrency)  # bounds requests in flight
        self._count_lock = threading.Lock()
        self._inflight: dict[str, Future] = {}  # request key -> the reply being fetched
        self.requests = 0  # HTTP requests made by this judge (cache misses)

    def ask(self, messages: list[dict], parse: Callable[[str], Any] | None = None,
            max_tokens: int | None = None) -> Verdict:
        """Ask once (more if the reply does not parse); `parse` returns None for a bad reply.

        `max_tokens` is the benchmark's cap (VDCscore: 256); the judge's own setting overrides it.
        """
        params = {"temperature": self.temperature, "max_tokens": self.max_tokens or max_tokens}  # the user's cap wins
        verdict = Verdict()
        for attempt in range(self.parse_attempts):
            key = request_key(messages, self.client.model, params, attempt)
            try:
                reply = self._reply(key, messages, params, verdict)
            except ChatError as e:
                if e.transient:
                    raise JudgeUnavailable(f"the judge is unavailable ({e}); rerun with --resume") from None
                verdict.error = f"request failed: {e}"
                return verdict
            verdict.replies.append(reply)
            parsed = safe_parse(parse, reply) if parse else reply
            if parsed is not None:
                verdict.parsed = parsed
                return verdict
        verdict.error = f"unparsable reply after {self.parse_attempts} attempts"
        return verdict

    def _reply(self, key: str, messages: list[dict], params: dict, verdict: Verdict) -> str:
        """The cached reply, else the one a concurrent identical request is fetching, else a new one."""
        reply = self.cache.get(key)
        if reply is not None:
            return reply
        with self._count_lock:
            pending = self._inflight.get(key)
            owner = pending is None
            if owner:
                pending = self._inflight[key] = Future()
        if not owner:
            return pending.result()  # raises the owner's ChatError too
        try:
            try:
                with self._slots:
                    reply = self.client.complete(messages, **params)
            finally:
                with self._count_lock:
                    self.requests += 1
                    verdict.requests += 1
            self.cache.put(key, reply, self.client.model)
            pending.set_result(reply)
            return reply
        except BaseException as e:
            pending.set_exception(e)
            raise
        finally:
            with self._count_lock:
                self._inflight.pop(key, None)

    def map(self, fn: Callable, items: list) -> list:
        """fn over items on up to `concurrency` threads, results in order."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def describe(self) -> dict:
        return {**self.client.describe(), "temperature": self.temperature, "max_tokens": self.max_tokens,
                "parse_attempts": self.parse_attempts, "parse_rule": PARSE_RULE, "cache": str(self.cache.path)}

    def close(self) -> None:
        self.client.close()
        self.cache.close()


# ---- reading judge replies -------------------------------------------------------------------


def safe_parse(parse: Callable[[str], Any], reply: str) -> Any:
    """`parse(reply)`, with any exception (a bug in the parser, an interpreter error) as None:
    the reply is recorded as unparsed, as the published scripts do, and the run goes on."""
    try:
        return parse(reply)
    except Exception:  # noqa: BLE001 - deliberately everything: one reply must not end a run
        return None


def literal_dict(text: str) -> dict | None:
    """The Python/JSON dict a judge replied with, or None."""
    text = (text or "").strip()
    if len(text) > MAX_PARSED_CHARS:
        return None
    candidates = [text] + re.findall(r"\{[^{}]*\}", text)[:1]
    for candidate in candidates:
        try:
            with _AST_LOCK:  # gh-106905: CPython's AST constructor is not thread-safe
                value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, SystemError):
            continue
        if isinstance(value, dict):
            return value
    return None


def number(value) -> float | None:
    """A finite score from an int, float or numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and abs(result) != float("inf") else None


def parse_pred_score(text: str) -> dict | None:
    """{'pred': 'yes'|'no'|..., 'score': number} replies (Video-ChatGPT QA judge, VDCscore step 2)."""
    value = literal_dict(text)
    if value is None or not isinstance(value.get("pred"), str) or number(value.get("score")) is None:
        return None
    return {"pred": value["pred"], "score": number(value["score"])}


def parse_score(text: str) -> dict | None:
    """{'score': number} replies (Video-ChatGPT's VCG judges)."""
    value = literal_dict(text)
    if value is None or number(value.get("score")) is None:
        return None
    return {"score": number(value["score"])}
