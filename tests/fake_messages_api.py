"""A local HTTP server that speaks the Anthropic Messages API (POST /v1/messages) with scripted
replies, for testing Claude callers through the real SDK: the Anthropic API is unreachable here."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


class FakeMessagesApi:
    """Serves scripted replies in order: (status, body, delay_s, headers). Records each request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, Any, float, dict[str, str]]] = []
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                api.paths.append(self.path)
                api.requests.append(json.loads(body))
                status, reply, delay, headers = api.script.pop(0) if api.script else (500, OVERLOADED, 0.0, {})
                if delay:
                    time.sleep(delay)
                payload = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("request-id", "req_test")
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeMessagesApi":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
