"""`supportflow kb` and `supportflow cases` end with one clear line, not a traceback, when the
store cannot be reached or the tenant id is refused. No server is needed: the ports are closed."""

from __future__ import annotations

import socket

import pytest

from tooling.cli import main


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once the socket closes: nothing listens there


@pytest.fixture
def nowhere(monkeypatch):
    http_port, grpc_port = closed_port(), closed_port()
    monkeypatch.setenv("SUPPORTFLOW_WEAVIATE_HTTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SUPPORTFLOW_WEAVIATE_HTTP_PORT", str(http_port))
    monkeypatch.setenv("SUPPORTFLOW_WEAVIATE_GRPC_PORT", str(grpc_port))
    return http_port, grpc_port


@pytest.mark.parametrize("argv", [
    ["kb", "search", "my card was declined", "--tenant", "acme"],
    ["cases", "search", "my card was declined", "--tenant", "acme"],
])
def test_an_unreachable_store_ends_the_command_with_where_it_looked(nowhere, argv):
    http_port, grpc_port = nowhere
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    message = str(stopped.value.code)
    assert message.startswith(f"supportflow {argv[0]} search: ")
    assert f"Is Weaviate running at http://127.0.0.1:{http_port} (gRPC port {grpc_port})?" in message


def test_a_refused_tenant_id_ends_the_command_with_the_rule(nowhere):
    with pytest.raises(SystemExit) as stopped:
        main(["kb", "search", "my card was declined", "--tenant", "no spaces allowed"])
    assert str(stopped.value.code) == (
        "supportflow kb search: tenant id 'no spaces allowed' must match ^[A-Za-z0-9_-]{1,64}$"
    )
