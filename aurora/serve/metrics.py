"""Server metrics in Prometheus' text format, kept by hand (no client library needed).

`aurora_requests_total{path,status}`, `aurora_request_duration_seconds` (a histogram, to the last
byte of streamed answers), `aurora_queue_depth`, `aurora_running_generations`,
`aurora_prompt_tokens_total`, `aurora_generated_tokens_total`, `aurora_cancelled_total`.
`MetricsMiddleware` counts every HTTP request by route and status.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
PATHS = ("/v1/chat/completions", "/v1/models", "/health", "/metrics")  # others are counted as "other"


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (path, status) -> count
        self.bucket_counts = [0] * (len(BUCKETS) + 1)  # last one is +Inf
        self.duration_sum = 0.0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.cancelled = 0

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(path if path in PATHS else "other", status)] += 1
            if path == "/v1/chat/completions":
                self.bucket_counts[bisect_left(BUCKETS, seconds)] += 1
                self.duration_sum += seconds

    def observe_reply(self, reply) -> None:
        with self._lock:
            self.prompt_tokens += reply.prompt_tokens
            self.generated_tokens += reply.generated_tokens
            self.cancelled += reply.finish_reason == "cancelled"

    def render(self, queue_depth: int, running: int) -> str:
        with self._lock:
            lines = ["# HELP aurora_requests_total HTTP requests by path and status code.",
                     "# TYPE aurora_requests_total counter"]
            for (path, status), count in sorted(self.requests.items()):
                lines.append(f'aurora_requests_total{{path="{path}",status="{status}"}} {count}')
            lines += ["# HELP aurora_request_duration_seconds Chat completion latency, to the last byte.",
                      "# TYPE aurora_request_duration_seconds histogram"]
            cumulative = 0
            for bound, count in zip(BUCKETS + ("+Inf",), self.bucket_counts):
                cumulative += count
                lines.append(f'aurora_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
            lines.append(f"aurora_request_duration_seconds_sum {self.duration_sum:.6f}")
            lines.append(f"aurora_request_duration_seconds_count {cumulative}")
            for name, kind, help_text, value in (
                ("aurora_queue_depth", "gauge", "Admitted requests waiting for a generation slot.", queue_depth),
                ("aurora_running_generations", "gauge", "Generations running now.", running),
                ("aurora_prompt_tokens_total", "counter", "Prompt tokens (text + visual) processed.", self.prompt_tokens),
                ("aurora_generated_tokens_total", "counter", "Tokens generated.", self.generated_tokens),
                ("aurora_cancelled_total", "counter", "Generations stopped because the client left.", self.cancelled),
            ):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request to its last byte and counts its status."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # an exception before any response counts as a server error

        async def send_and_watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self.metrics.observe_request(scope.get("path", ""), status, time.perf_counter() - start)
