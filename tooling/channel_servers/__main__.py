"""`python -m tooling.channel_servers --config <file>`: every stand-in in one process, one event loop.

Binds each server to a free port on the configured host (port 0, so no other process can take the
port between choosing and binding it), serves the Zendesk, Intercom, Freshdesk and API-callback
apps with one uvicorn server each and the mail server with aiosmtpd plus its HTTP listing, then
writes `ports.json` in the state directory: the parent (`ChannelServers.start`) waits for that file.
SIGTERM or SIGINT stops everything, and so does the parent process going away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Iterator

import uvicorn

from tooling.channel_servers.api_callback import ApiCallbackServer
from tooling.channel_servers.config import ChannelServersConfig
from tooling.channel_servers.freshdesk import FreshdeskServer
from tooling.channel_servers.intercom import IntercomServer
from tooling.channel_servers.mail import MailServer
from tooling.channel_servers.zendesk import ZendeskServer

log = logging.getLogger("channel_servers")

PORTS_FILE = "ports.json"
HTTP_SERVERS = ("zendesk", "intercom", "freshdesk", "mail", "api")


class _SharedLoopServer(uvicorn.Server):
    """A uvicorn server that is one of several on a loop: the process, not each server, handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bound_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.set_inheritable(False)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{sock.getsockname()[1]}"


async def serve(config: ChannelServersConfig) -> None:
    state_dir = Path(config.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    sockets = {name: _bound_socket(config.host) for name in (*HTTP_SERVERS, "smtp")}
    urls = {name: _url(config.host, sockets[name]) for name in HTTP_SERVERS}

    zendesk = ZendeskServer(config.tenants, urls["zendesk"], state_dir)
    intercom = IntercomServer(config.tenants, urls["intercom"], state_dir)
    freshdesk = FreshdeskServer(config.tenants, urls["freshdesk"], state_dir)
    mail = MailServer(config.tenants, state_dir, gateway_smtp=config.gateway_smtp)
    api = ApiCallbackServer(config.tenants, state_dir)
    apps = {"zendesk": zendesk.app(), "intercom": intercom.app(), "freshdesk": freshdesk.app(), "mail": mail.app(),
            "api": api.app()}

    servers = {name: _SharedLoopServer(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                                      timeout_graceful_shutdown=2))
               for name, app in apps.items()}
    tasks = {name: asyncio.create_task(server.serve(sockets=[sockets[name]]), name=f"uvicorn-{name}")
             for name, server in servers.items()}
    while not all(server.started for server in servers.values()):
        failed = [name for name, task in tasks.items() if task.done()]
        if failed:
            for name in failed:
                tasks[name].result()  # raises what stopped it
            raise RuntimeError(f"{', '.join(failed)} stopped while starting")
        await asyncio.sleep(0.02)

    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(mail.smtp_protocol, sock=sockets["smtp"])
    smtp_port = sockets["smtp"].getsockname()[1]

    ports = {f"{name}_url": url for name, url in urls.items()} | {
        "mail_smtp": f"{config.host}:{smtp_port}", "pid": os.getpid()}
    ports_path = state_dir / PORTS_FILE
    partial = ports_path.with_suffix(".tmp")
    partial.write_text(json.dumps(ports, indent=2))
    partial.replace(ports_path)
    log.info("channel servers up for %s: %s", ", ".join(t.tenant for t in config.tenants),
             ", ".join(f"{k}={v}" for k, v in ports.items() if k != "pid"))

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    orphan_watch = asyncio.create_task(_stop_when_orphaned(stop))
    stopped_early = asyncio.create_task(asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED))
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait([waiting, stopped_early], return_when=asyncio.FIRST_COMPLETED)
    log.info("channel servers stopping")
    for server in servers.values():
        server.should_exit = True
    smtp.close()
    for sender in (zendesk.webhooks, intercom.webhooks, freshdesk.webhooks):
        await sender.close()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    for task in (waiting, stopped_early, orphan_watch):
        task.cancel()
    with contextlib.suppress(OSError):
        ports_path.unlink()
    log.info("channel servers stopped")


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    """The parent runs in its own session from us (so a terminal's Ctrl-C reaches it, not us): if it
    dies without stopping us, we notice our parent changed and stop rather than linger."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("parent process %d is gone: stopping", parent)
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tooling.channel_servers",
                                     description="Local stand-ins for Zendesk, Intercom, Freshdesk and mail.")
    parser.add_argument("--config", required=True, help="JSON written by ChannelServersConfig.to_json()")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: a line per SMTP command
    config = ChannelServersConfig.from_json(Path(args.config).read_text(encoding="utf-8"))
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
