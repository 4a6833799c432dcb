"""Serving an ASGI application (Starlette) with uvicorn on a thread of its own, for the services
that answer HTTP beside their consumers (the gateway's intake, the workspace): the socket is bound
before the thread starts, so a taken port fails at once and port 0 gives any free one
(`server_address`); logging stays the service's JSON logging; `shutdown` stops it gracefully."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


class HttpServer:
    def __init__(self, app: Any, host: str, port: int, *, name: str, protocol: type | None = None) -> None:
        """`protocol`: uvicorn's HTTP protocol class to use instead of its default (h11)."""
        options: dict[str, Any] = {"http": protocol} if protocol is not None else {}
        config = uvicorn.Config(
            app,
            ws="none",
            lifespan="off",
            loop="asyncio",
            log_config=None,  # the service's JSON logging stays in charge
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=5,
            **options,
        )
        self._name = name
        self._server = uvicorn.Server(config)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on each connection it accepts (it checks the
        # protocol): without it a response written in two parts waits for the client's delayed ACK.
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        self._thread = threading.Thread(target=self._run, name=f"{name}-http", daemon=True)
        self._failure: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._failure = exc
            log.error("HTTP server stopped", exc_info=True)

    def start(self, timeout_s: float = 10.0) -> "HttpServer":
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError(f"the {self._name}'s HTTP server did not start on {self.server_address}: "
                                   f"{self._failure!r}")
            time.sleep(0.02)
        log.info("HTTP serving", extra={"fields": {"port": self.server_address[1]}})
        return self

    def shutdown(self, timeout_s: float = 15.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._socket.close()
