"""The gateway's HTTP server against clients that misbehave: a bad Content-Length is refused, and
a client that stalls is cut off instead of holding a server thread. No request reaches Kafka."""

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


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_content_length_that_is_not_a_byte_count_is_refused(port, length):
    reply = exchange(port, f"POST /v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400")
    assert "Content-Length must be a whole number" in json.loads(body)["error"]


def test_a_client_that_stops_sending_its_body_is_cut_off(port):
    started = time.monotonic()
    reply = exchange(port, b"POST /v1/tickets HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"body\": ")
    assert reply == b""  # closed without an answer: there is no request to answer
    assert time.monotonic() - started < 4


def test_a_client_that_sends_nothing_is_cut_off(port):
    started = time.monotonic()
    assert exchange(port, b"") == b""
    assert time.monotonic() - started < 4
