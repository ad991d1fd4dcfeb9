"""Local HTTP servers that speak the wire protocols of OpenAI, Anthropic and Ollama (and a webhook
receiver), so the providers' real client libraries run against them with no network.

Each answers a chat request the way its provider does, with a JSON summary made from the request;
``fail_next(n, status)`` makes the next ``n`` requests fail the way that provider fails (OpenAI and
Anthropic error bodies, ``Retry-After: 0``; Ollama's ``{"error": ...}``).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR_TYPES = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error", 401: "authentication_error"}


class _Server:
    """A loopback server; ``requests`` holds (path, headers, parsed body) of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.raw_bodies: list[bytes] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with outer._lock:
                    outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    outer.raw_bodies.append(raw)
                    failing = outer._failures.pop(0) if outer._failures else None
                status, payload, headers = (outer.failure(failing) if failing is not None
                                            else outer.answer(self.path, body))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, status: int = 429) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def chat_requests(self) -> list[Any]:
        return [body for path, _h, body in self.requests]

    # Subclasses: the provider's answer and error shapes.
    def answer(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def failure(self, status: int) -> tuple[int, Any, dict[str, str]]:
        message = "Rate limit reached, slow down" if status == 429 else "The server had an error"
        return status, {"error": {"message": message, "type": ERROR_TYPES.get(status, "error"), "code": None}}, \
            {"Retry-After": "0", "retry-after-ms": "10"}


def reply_for(messages: list[dict[str, Any]]) -> str:
    """What the fake model says: a JSON summary naming the user message's size and first words,
    or plain text for a map step or a user prompt (the tests read these back)."""
    system = " ".join(str(m.get("content")) for m in messages if m.get("role") == "system")
    user = next((m["content"] for m in messages if m.get("role") == "user"), "")
    if isinstance(user, list):
        user = " ".join(part.get("text", "") for part in user)
    head = " ".join(user.split()[:6])
    if "of a longer transcript" in user.split("\n", 1)[0]:
        return f"partial summary ({len(user)} chars): {head}"
    if "JSON object" in system:
        return json.dumps({"summary": f"Summary of {len(user)} characters: {head}",
                           "key_phrases": ["ask not", "your country"]})
    return f"ANSWER to: {user.splitlines()[0][:120]}"


class OpenAIServer(_Server):
    def answer(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}, {}
        text = reply_for(body["messages"])
        return 200, {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
                     "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                                                          "message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}, {}


class AnthropicServer(_Server):
    def answer(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        if path != "/v1/messages":
            return 404, {"type": "error", "error": {"type": "not_found_error", "message": path}}, {}
        messages = [{"role": "system", "content": body.get("system", "")}, *body["messages"]]
        return 200, {"id": "msg_test", "type": "message", "role": "assistant", "model": body["model"],
                     "content": [{"type": "text", "text": reply_for(messages)}], "stop_reason": "end_turn",
                     "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 10}}, {}

    def failure(self, status: int) -> tuple[int, Any, dict[str, str]]:
        return status, {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                                   "message": f"status {status} from the test server"}}, \
            {"retry-after": "0"}


class OllamaServer(_Server):
    def answer(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        if path != "/api/chat":
            return 404, {"error": f"no route {path}"}, {}
        return 200, {"model": body["model"], "created_at": "2026-11-29T00:00:00Z",
                     "message": {"role": "assistant", "content": reply_for(body["messages"])},
                     "done": True, "done_reason": "stop", "total_duration": 1}, {}

    def failure(self, status: int) -> tuple[int, Any, dict[str, str]]:
        return status, {"error": "server busy" if status == 429 else "model runner crashed"}, {}


class WebhookReceiver(_Server):
    """Records callbacks; ``fail_next`` makes it answer 500 first."""

    def answer(self, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        return 200, {"ok": True}, {}

    def failure(self, status: int) -> tuple[int, Any, dict[str, str]]:
        return status, {"error": "receiver down"}, {}
