"""Detached server processes tracked by pid files, so one command can start a server and another stop it.

`supportflow dev up` must return while Kafka and Weaviate keep running, and `supportflow dev down`
(a different process) must find and stop them later. Both only work through state on disk: a pid
file per server, checked against /proc so a stale file, or a pid the kernel has since handed to an
unrelated program, is never mistaken for our server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_POLL_INTERVAL_S = 0.2

# Popen objects of the servers this process started. Holding them keeps Python from warning that a
# subprocess is "still running" when the object is garbage-collected: outliving us is the point.
_detached_children: list[subprocess.Popen] = []


class ServerStartError(RuntimeError):
    """A server exited or did not become ready in time; the message carries the tail of its log."""


@dataclass(frozen=True)
class ServerProcess:
    """One long-running server: where its pid and its output live, and how to recognise it.

    `cmdline_marker` is a string that must appear in the process's command line (for example the
    path of its config file). It guards against pid reuse after a reboot or a crash.
    """

    name: str
    pid_file: Path
    log_path: Path
    cmdline_marker: str

    def pid(self) -> int | None:
        """The pid of our running server, or None; removes the pid file if it is stale."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _is_alive(pid):
            cmdline = _cmdline(pid)
            if cmdline is None or self.cmdline_marker in cmdline:
                return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> int:
        """Start `argv` in its own session, output to the log file, and record its pid.

        A new session detaches the server from the caller's terminal and process group, so it
        survives the Python process that started it and a Ctrl-C aimed at that process. The
        previous run's log is kept as `<log>.1` for post-mortems.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        with open(self.log_path, "ab") as log:
            child = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _detached_children.append(child)
        # Popen can return while the kernel is still inside exec, when /proc shows an empty command
        # line; a pid file written then could be judged stale by `pid()` and deleted.
        wait_for(lambda: child.poll() is not None or _cmdline(child.pid) != "", timeout_s=5, interval_s=0.01)
        _write_atomically(self.pid_file, f"{child.pid}\n")
        return child.pid

    def stop(self, *, grace_s: float) -> bool:
        """SIGTERM the server, SIGKILL it if it outlives `grace_s`; True if there was one to stop."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: not _is_alive(pid), timeout_s=grace_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not _is_alive(pid), timeout_s=10)
        self.pid_file.unlink(missing_ok=True)
        _forget_child(pid)
        return True

    def log_tail(self, lines: int = 25) -> str:
        """The last `lines` lines of the server's log, for error messages."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def startup_failure(self, reason: str) -> ServerStartError:
        """An error naming the server, the reason and the end of its log."""
        return ServerStartError(
            f"{self.name} {reason}; last lines of {self.log_path}:\n{self.log_tail()}"
        )


def wait_for(condition: Callable[[], bool], *, timeout_s: float, interval_s: float = _POLL_INTERVAL_S) -> bool:
    """Poll `condition()` until it is true or `timeout_s` passes; returns whether it became true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def port_is_open(host: str, port: int, *, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _forget_child(pid: int) -> None:
    """Drop the Popen of a server we started and stopped. _is_alive reaped it behind Popen's back;
    poll() sees that (ECHILD) and records it as exited, so Python does not warn at exit that it is
    "still running"."""
    for child in [c for c in _detached_children if c.pid == pid]:
        child.poll()
        _detached_children.remove(child)


def _is_alive(pid: int) -> bool:
    """True while `pid` runs; reaps it first if it is our own exited child, so zombies count as dead."""
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _proc_state(pid) != "Z":
        return True
    # It became a zombie after the waitpid above: reap it now if it is ours, so it is really gone.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def _proc_state(pid: int) -> str:
    """The one-letter state from /proc/<pid>/stat ('' where /proc does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def _cmdline(pid: int) -> str | None:
    """The process's command line, space separated; None where it cannot be read at all.

    Without /proc (macOS) the marker check cannot be made and the live pid alone is trusted.
    """
    if not Path("/proc/self").exists():
        return None
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", errors="replace")
    except OSError:
        return ""


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see a half-written pid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text)
    staging.replace(path)
