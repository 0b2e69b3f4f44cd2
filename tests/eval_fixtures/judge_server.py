"""A deterministic OpenAI-compatible chat server for tests: judges by rules, plays a model under test.

Rules (by the last user message):
  VDCscore step 1 (system "...providing accurate answers..."): replies with the caption itself.
  QA judge ('pred' and 'score'): yes when the correct answer is in the predicted one (score 5 if
      equal, else 4), else no (score 1).
  VCG judges ('score' only): 5 if the answer is in the prediction else 2; consistency: 4 if both
      predictions are equal else 1.
  MMBench answer matching (the prompt ends "Your output: "): the text after "#judge=" in the answer
      (e.g. "B"), else a reply naming no option.
  anything else (a model under test): "frames=N" for N image parts, "video" for a video part; with a
      pre-filled assistant turn (continue_final_message), "A) first".
Fault triggers anywhere in the user text: #malformed (never parsable), #retry-parse (unparsable the
first time), #http500 (HTTP 500 twice, then fine), #timeout (the first reply comes after 1 s),
#http400 (always HTTP 400), #fenced (the dict inside a ```python fence), #float (score 3.7).
`server.requests` counts every request; `server.bodies` counts them per request body.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JudgeServer:
    def __init__(self):
        self.requests = 0
        self.bodies: dict[str, int] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                key = hashlib.sha256(raw).hexdigest()
                with server.lock:
                    server.requests += 1
                    seen = server.bodies.get(key, 0)
                    server.bodies[key] = seen + 1
                status, reply = server.answer(body, seen)
                if status == "sleep":
                    time.sleep(1.0)
                    status = 200
                if status != 200:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "injected"}')
                    return
                data = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model"),
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": reply}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        return Handler

    def answer(self, body: dict, seen: int):
        messages = body["messages"]
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = [m for m in messages if m["role"] == "user"][-1]["content"]
        if isinstance(user, list):  # a model under test with media parts
            images = sum(p.get("type") == "image_url" for p in user)
            video = any(p.get("type") == "video_url" for p in user)
            if messages[-1]["role"] == "assistant" and body.get("continue_final_message"):
                return 200, "A) first"
            return 200, "video" if video else f"frames={images}"
        if "#http400" in user:
            return 400, None
        if "#http500" in user and seen < 2:
            return 500, None
        if "#timeout" in user and seen == 0:
            return "sleep", "{'pred': 'no', 'score': 0}"
        if user.endswith("Your output: ") or user.endswith("输出: "):
            match = re.search(r"#judge=(\S+)", user)
            return 200, match.group(1) if match else "I cannot tell."
        if "providing accurate answers" in system:
            caption = re.search(r"detailed description: (.*), question: ", user, re.S).group(1)
            return 200, caption
        if "#malformed" in user or ("#retry-parse" in user and seen == 0):
            return 200, "The prediction looks right to me."
        if "'pred' and 'score'" in user:
            correct = _field(user, "Correct Answer").lower()
            predicted = _field(user, "Predicted Answer").lower()
            verdict = ("yes", 5 if correct == predicted else 4) if correct in predicted else ("no", 1)
            reply = {"pred": verdict[0], "score": 3.7 if "#float" in user else verdict[1]}
        else:
            correct = _field(user, "Correct Answer").lower()
            if "Predicted Answer to Question 1" in user:
                one = _field(user, "Predicted Answer to Question 1")
                two = _field(user, "Predicted Answer to Question 2")
                reply = {"score": 4 if one == two else 1}
            else:
                reply = {"score": 5 if correct in _field(user, "Predicted Answer").lower() else 2}
        text = repr(reply)
        return 200, f"```python\n{text}\n```" if "#fenced" in user else text


def _field(text: str, name: str) -> str:
    match = re.search(re.escape(name) + r": (.*)", text)
    return match.group(1).strip() if match else ""
