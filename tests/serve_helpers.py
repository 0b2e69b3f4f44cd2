"""Helpers for the server tests: uvicorn in a background thread, a local media HTTP server, RSS."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import time


@contextlib.contextmanager
def running_app(app):
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class MediaHandler(http.server.BaseHTTPRequestHandler):
    """Serves `routes[path] = (content type, body bytes, delay seconds)` and records each request."""

    routes: dict = {}
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).seen.append((self.path, self.headers.get("Host")))
        content_type, body, delay = self.routes.get(self.path, ("text/plain", b"not found", 0))
        time.sleep(delay)
        self.send_response(200 if self.path in self.routes else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@contextlib.contextmanager
def media_http_server(routes: dict):
    """A threaded HTTP server on 127.0.0.1 serving `routes`; yields (port, handler class)."""
    handler = type("Handler", (MediaHandler,), {"routes": routes, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
