"""Throwaway PostgreSQL clusters for tests: `initdb`, `pg_ctl -w start`, one database, then gone.

The binaries are Debian's (`/usr/lib/postgresql/<major>/bin`). `ensure_postgres_binaries` finds
them, and on a fresh machine installs them with `apt-get install -y postgresql` when we are root;
otherwise it raises ToolUnavailable naming that command. (Debian's package also creates and may
start its own `main` cluster on port 5432; ours never touch it.)

`PostgresServer(settings, name)` (also a context manager) makes a cluster of its own each time:

- where: `<cache_dir>/state/postgres/<name>/` holds `data/` (the cluster), `sockets/` (the unix
  socket, `-k`), and `server.log`; `<cache_dir>/state/postgres/<name>.lock` keeps two processes off
  the same cluster. Nothing is in git, and `stop()` removes the cluster directory.
- how: listening on 127.0.0.1 only, on a free port picked at start, with `trust` authentication
  for the unix socket and 127.0.0.1 alone (pg_hba.conf is written by us, nothing else is allowed).
  Durability is off (fsync, synchronous_commit, full_page_writes): the data is thrown away anyway.
  `pg_ctl -w` returns once the server accepts connections; postgres keeps its own pid file
  (`data/postmaster.pid`), which `pg_ctl stop` and the clean-up of a cluster left behind by a
  killed session (found at the next start, stopped with `-m immediate` and removed) rely on.
- as whom: initdb and postgres refuse to run as root (a superuser must not be able to run code
  as root). As root we run them, and only them, as the `postgres` system user that Debian's package
  creates, via `subprocess`'s documented `user=`/`group=`/`extra_groups=` arguments (setuid before
  exec; no sudo, su or PAM needed), and chown the cluster directory to that user. Anyone else runs
  them as themselves. The `postgres` user must be able to reach the cluster directory; a root home
  is usually 0700, so when it cannot, the cluster goes to `/var/tmp/supportflow-postgres-<hash of
  the cache dir>/<name>` instead (a root-owned 0755 directory; the lock stays in the cache dir).
  Giving the server capabilities to cross the home directory would let any local user (trust
  auth) read root's files through `pg_read_server_files`, so that is not done.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from pathlib import Path

from filelock import FileLock, Timeout

from tooling.devinfra.gotools import ToolUnavailable
from tooling.devinfra.process import ServerStartError
from tooling.settings import FleetSettings

__all__ = ["PostgresServer", "ServerStartError", "ToolUnavailable", "ensure_postgres_binaries"]

DEBIAN_PACKAGE = "postgresql"
SERVER_USER = "postgres"  # the system user Debian's package creates
SUPERUSER = "supportflow"  # the cluster's superuser role (trust auth: no password)
_BINARIES = ("initdb", "pg_ctl", "postgres", "createdb")
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 60
_PG_HBA = """\
# Written by tooling.devinfra.postgres: a throwaway cluster, trust on loopback only.
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
"""


def _find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding every binary we need."""
    candidates = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        if all((bin_dir / name).is_file() for name in _BINARIES):
            major = bin_dir.parent.name
            candidates.append((int(major) if major.isdigit() else 0, bin_dir))
    return max(candidates)[1] if candidates else None


def ensure_postgres_binaries(*, log_path: Path | None = None) -> Path:
    """The folder of initdb, pg_ctl, postgres and createdb; installs Debian's package when we are root."""
    found = _find_bin_dir()
    if found is not None:
        return found
    command = f"apt-get install -y {DEBIAN_PACKAGE}"
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        raise ToolUnavailable(
            f"PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed: run "
            f"`{'sudo ' if os.geteuid() != 0 else ''}{command}` (Debian/Ubuntu) and try again"
        )
    log = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        install = [apt_get, "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE]
        if subprocess.run(install, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode != 0:
            # A fresh machine often has no package lists yet.
            subprocess.run([apt_get, "update"], env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
            subprocess.run(install, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    finally:
        if log_path is not None:
            log.close()
    found = _find_bin_dir()
    if found is None:
        where = f" (log: {log_path})" if log_path is not None else ""
        raise ToolUnavailable(f"`{command}` did not install PostgreSQL's server binaries{where}")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One throwaway cluster and database. `start()` returns the SQLAlchemy URL; `stop()` removes it.

    >>> with PostgresServer(settings, "pytest") as url: ...
    """

    def __init__(self, settings: FleetSettings, name: str = "default", *, database: str = "supportflow") -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not re.fullmatch(r"[a-z_][a-z0-9_]*", database):
            raise ValueError(f"bad cluster name {name!r} or database name {database!r}")
        self.name = name
        self.database = database
        self.state_root = Path(settings.cache_dir) / "state" / "postgres"
        self.lock_path = self.state_root / f"{name}.lock"
        self.run_as = self._server_user()
        self.cluster_dir = self.state_root / name  # moved by start() when run_as cannot reach it
        self.port: int | None = None
        self._bin_dir: Path | None = None
        self._lock: FileLock | None = None

    # --- paths -----------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir / "sockets"

    @property
    def log_path(self) -> Path:
        return self.cluster_dir / "server.log"

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"postgres cluster {self.name!r} is not running")
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> str:
        """Make a fresh cluster, start it, create the database; returns its SQLAlchemy URL."""
        if self.port is not None:
            return self.url
        self._bin_dir = ensure_postgres_binaries(log_path=self._install_log())
        self._take_lock()
        try:
            self.cluster_dir = self._choose_cluster_dir()
            self._stop_server(mode="immediate")  # whatever a killed session left behind
            self._remove_cluster()
            self._init_cluster()
            self._start_server()
            self._create_database()
        except BaseException:
            self._stop_server(mode="immediate")
            self._remove_cluster()
            self.port = None
            self._release_lock()
            raise
        return self.url

    def stop(self) -> None:
        """Stop the server and remove the cluster directory (safe to call twice)."""
        try:
            if self._bin_dir is not None:
                self._stop_server(mode="fast")
                self._remove_cluster()
        finally:
            self.port = None
            self._release_lock()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- steps -----------------------------------------------------------------------------------

    def _init_cluster(self) -> None:
        self.cluster_dir.mkdir(parents=True, mode=0o700)
        self.socket_dir.mkdir(mode=0o700)
        self._give_to_server_user(self.cluster_dir, self.socket_dir)
        self._run_as_server(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-sync", "--no-instructions", what="initdb")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(_PG_HBA)
        hba.chmod(0o600)
        self._give_to_server_user(hba)

    def _start_server(self) -> None:
        last_error: ServerStartError | None = None
        for _ in range(3):  # the free port may be taken between the probe and the bind
            port = _free_port()
            options = " ".join([
                f"-p {port}", "-c listen_addresses=127.0.0.1", f"-k {self.socket_dir}",
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=50", "-c shared_buffers=32MB",
            ])
            try:
                self._run_as_server("pg_ctl", "start", "-w", "-t", str(_START_TIMEOUT_S), "-D", str(self.data_dir),
                                    "-l", str(self.log_path), "-o", options, what="pg_ctl start")
            except ServerStartError as exc:
                last_error = exc
                self._stop_server(mode="immediate")
                if "could not bind" not in self._log_tail() and "in use" not in self._log_tail():
                    raise
                continue
            self.port = port
            return
        assert last_error is not None
        raise last_error

    def _create_database(self) -> None:
        result = subprocess.run(
            [str(self._bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, self.database],
            capture_output=True, text=True, check=False, env=self._env())
        if result.returncode != 0:
            raise ServerStartError(f"createdb {self.database} failed: {result.stdout}{result.stderr}".strip())

    def _stop_server(self, *, mode: str) -> None:
        if self._bin_dir is None or not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run_as_server("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w",
                                "-t", str(_STOP_TIMEOUT_S), what="pg_ctl stop")
        except ServerStartError:
            if mode != "immediate":
                self._stop_server(mode="immediate")

    def _remove_cluster(self) -> None:
        if self.cluster_dir.exists():
            shutil.rmtree(self.cluster_dir)

    # --- users and directories -------------------------------------------------------------------

    @staticmethod
    def _server_user() -> pwd.struct_passwd | None:
        """The user to run initdb/postgres as: None (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise ToolUnavailable(
                f"initdb and postgres refuse to run as root, and there is no `{SERVER_USER}` user to run "
                f"them as: `apt-get install -y {DEBIAN_PACKAGE}` creates it (or run the tests as a non-root user)"
            ) from None

    def _choose_cluster_dir(self) -> Path:
        preferred = self.state_root / self.name
        self.state_root.mkdir(parents=True, exist_ok=True)
        if self.run_as is None or self._server_user_can_reach(self.state_root):
            return preferred
        digest = hashlib.sha256(str(self.state_root.resolve()).encode()).hexdigest()[:12]
        root = Path("/var/tmp") / f"supportflow-postgres-{digest}"
        root.mkdir(mode=0o755, exist_ok=True)
        info = root.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise ServerStartError(f"{root} is not a directory of ours; remove it and try again")
        root.chmod(0o755)
        return root / self.name

    def _server_user_can_reach(self, directory: Path) -> bool:
        """Whether the server user can enter `directory` (every parent must let it through)."""
        result = subprocess.run(["test", "-x", str(directory)], cwd="/", check=False, **self._as_server_kwargs())
        return result.returncode == 0

    def _give_to_server_user(self, *paths: Path) -> None:
        if self.run_as is not None:
            for path in paths:
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)

    def _as_server_kwargs(self) -> dict:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if self.run_as is not None:
            env.update(HOME=self.run_as.pw_dir, USER=self.run_as.pw_name, LOGNAME=self.run_as.pw_name)
        return env

    def _run_as_server(self, binary: str, *args: str, what: str) -> None:
        # cwd inside the cluster: initdb fails when it cannot read the directory it is started in.
        result = subprocess.run([str(self._bin_dir / binary), *args], cwd=self.cluster_dir, env=self._env(),
                                capture_output=True, text=True, check=False, **self._as_server_kwargs())
        if result.returncode != 0:
            raise ServerStartError(
                f"postgres cluster {self.name!r}: `{what}` failed (exit code {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\nlast lines of {self.log_path}:\n{self._log_tail()}".rstrip())

    def _log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _install_log(self) -> Path:
        logs = self.state_root.parent.parent / "tools" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / "postgresql-install.log"

    # --- the lock --------------------------------------------------------------------------------

    def _take_lock(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path)
        try:
            lock.acquire(timeout=0)  # held until stop()
        except Timeout:
            raise ServerStartError(
                f"postgres cluster {self.name!r} is in use by another process (lock {self.lock_path}); "
                "use another name") from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
