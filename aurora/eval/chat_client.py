"""One OpenAI-compatible `POST /chat/completions` call with retries: the transport under judges and
endpoint models.

Retried with exponential backoff (base * 2**attempt, capped; a numeric Retry-After is honoured):
timeouts, connection errors, HTTP 429 and 5xx, and 200 replies that are not a chat completion.
Not retried: other 4xx (a wrong model name or key does not get better by asking again).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aurora.errors import AuroraError, ConfigError

if TYPE_CHECKING:
    import httpx


class ChatError(AuroraError):
    """A chat request that failed for good: refused (a 4xx), or `transient` (every retry used up on
    timeouts, connection errors, 429 or 5xx — worth resuming later)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def _httpx():
    """httpx, imported when a request is made: `aurora caption` and friends need no HTTP client."""
    try:
        import httpx
    except ImportError:
        raise ConfigError("talking to an endpoint or judge needs httpx: pip install 'aurora[eval]'") from None
    return httpx


def completions_url(url: str) -> str:
    """Accept a server root, a `/v1` base or the full endpoint."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + "/chat/completions" if url.endswith("/v1") else url + "/v1/chat/completions"


@dataclass
class ChatClient:
    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never stored
    timeout: float = 120.0
    retries: int = 5
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_backoff: float = 60.0
    _http: httpx.Client | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint URL must start with http:// or https://, got {self.url!r}")
        if not self.model:
            raise ConfigError(f"no model name given for {self.url}")
        self.endpoint = completions_url(self.url)

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            httpx = _httpx()
            headers = {}
            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            if key:
                headers["Authorization"] = f"Bearer {key}"
            self._http = httpx.Client(timeout=self.timeout, headers=headers,
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        return self._http

    def complete(self, messages: list[dict], **params) -> str:
        """The reply text of one chat completion (params: temperature, max_tokens, seed, ...)."""
        httpx = _httpx()
        body = {"model": self.model, "messages": messages, **{k: v for k, v in params.items() if v is not None}}
        problem, retry_after = "", None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                response = self.http.post(self.endpoint, json=body)
            except httpx.TimeoutException:
                problem = "timed out"
                continue
            except httpx.TransportError as e:
                problem = f"connection failed ({type(e).__name__})"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem, retry_after = f"HTTP {response.status_code}", response.headers.get("retry-after")
                continue
            if response.status_code >= 400:
                raise ChatError(f"{self.endpoint} answered HTTP {response.status_code}: {response.text[:200]}")
            try:
                return _reply_text(response.json())
            except (ValueError, KeyError, IndexError, TypeError):
                problem = "the reply is not a chat completion"
                continue
        raise ChatError(f"{self.endpoint}: {problem} after {self.retries + 1} attempts", transient=True)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), self.max_backoff))
            except ValueError:  # an HTTP date: keep our own backoff
                pass
        return delay

    def describe(self) -> dict:
        return {"url": self.endpoint, "model": self.model}

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _reply_text(data: dict) -> str:
    content = data["choices"][0]["message"]["content"]
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if content is None:
        raise ValueError("empty content")
    return content
