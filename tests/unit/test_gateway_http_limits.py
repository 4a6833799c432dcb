"""The gateway's HTTP server against clients that misbehave: a bad Content-Length is refused, an
oversized body is refused before it is read, and a client that stalls is cut off instead of
holding a connection. No request reaches Kafka."""

from __future__ import annotations

import json
import socket
import time

import pytest

from services.gateway.http_api import GatewayApp, serve


@pytest.fixture
def port():
    app = GatewayApp(publisher=None, default_tenant="t", webhook_secret="", max_body_bytes=1_000)  # type: ignore[arg-type]
    server = serve(app, 0, host="127.0.0.1", client_timeout_s=0.5)
    yield server.server_address[1]
    server.shutdown()


def exchange(port: int, raw: bytes, wait_s: float = 5.0) -> bytes:
    """Send `raw`, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        conn.sendall(raw)
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        return received


def status_and_json(reply: bytes) -> tuple[bytes, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_content_length_that_is_not_a_byte_count_is_refused(port, length):
    reply = exchange(port, f"POST /v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
    status, body = status_and_json(reply)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert "Content-Length must be a whole number" in body["error"]


def test_a_client_that_stops_sending_its_body_is_cut_off(port):
    started = time.monotonic()
    reply = exchange(port, b"POST /v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"body\": ")
    status, body = status_and_json(reply)  # told why, then the connection is closed
    assert status == b"HTTP/1.1 408 Request Timeout" and "did not arrive" in body["error"]
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("raw", [b"", b"POST /v1/tick", b"POST /v1/tickets HTTP/1.1\r\nHost: x\r\n"])
def test_a_client_that_never_completes_its_request_head_is_cut_off(port, raw):
    started = time.monotonic()
    assert exchange(port, raw) == b""  # closed without an answer: there is no request to answer
    assert time.monotonic() - started < 4


def test_an_announced_body_over_the_limit_is_refused_unread(port):
    reply = exchange(port, b"POST /v1/channels/zendesk/acme HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    status, body = status_and_json(reply)
    assert status == b"HTTP/1.1 413 Request Entity Too Large" and "1000 bytes" in body["error"]


def test_a_chunked_body_over_the_limit_is_refused(port):
    chunk = b"x" * 800
    raw = (b"POST /v1/tickets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
    assert status_and_json(exchange(port, raw))[0] == b"HTTP/1.1 413 Request Entity Too Large"


def test_only_post_is_served_and_unknown_paths_are_404(port):
    assert exchange(port, b"GET /v1/tickets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 405")
    reply = exchange(port, b"POST /v1/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status_and_json(reply) == (b"HTTP/1.1 404 Not Found", {"error": "no such endpoint /v1/nope"})
