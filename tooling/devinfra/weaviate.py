"""A standalone Weaviate server built from its Go module and run on loopback.

Weaviate's release binaries come from a host these machines cannot reach, but its source is a Go
module, so `go install` builds the server (several minutes, once) into the cache.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from tooling.devinfra.gotools import go_install
from tooling.devinfra.process import ServerProcess, port_is_open
from tooling.settings import FleetSettings

WEAVIATE_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"
WEAVIATE_VERSION = "v1.39.0"
_BINARY = "weaviate-server"
_NODE_NAME = "node1"


def weaviate_binary(cache_dir: Path) -> Path:
    """Where the built server lives (whether or not it has been built yet)."""
    return cache_dir / "weaviate" / "bin" / f"{_BINARY}-{WEAVIATE_VERSION}"


def ensure_weaviate(cache_dir: Path, *, log_path: Path | None = None) -> Path:
    """Return the path of the weaviate-server binary, building it with `go install` the first time."""
    binary = weaviate_binary(cache_dir)
    return go_install(
        WEAVIATE_MODULE,
        WEAVIATE_VERSION,
        binary.name,
        binary.parent,
        log_path=log_path or binary.parent.parent / "build.log",
    )


class WeaviateServer:
    """The local Weaviate node: its environment, process and readiness check.

    Data lives under `<cache_dir>/state/weaviate`, so collections survive `down`/`up` cycles.
    """

    def __init__(self, settings: FleetSettings) -> None:
        self.host = settings.weaviate_http_host
        self.http_port = settings.weaviate_http_port
        self.grpc_port = settings.weaviate_grpc_port
        self.gossip_port = settings.weaviate_gossip_port
        self.data_port = settings.weaviate_data_port
        self.raft_port = settings.weaviate_raft_port
        self.raft_internal_rpc_port = settings.weaviate_raft_internal_rpc_port
        self.cache_dir = settings.cache_dir
        self.state_dir = settings.cache_dir / "state" / "weaviate"
        self.data_dir = self.state_dir / "data"
        self.process = ServerProcess(
            name="weaviate",
            pid_file=self.state_dir / "weaviate.pid",
            log_path=self.state_dir / "weaviate.log",
            cmdline_marker=str(weaviate_binary(settings.cache_dir)),
        )

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def install(self) -> Path:
        """Make sure the server binary is built; returns its path."""
        return ensure_weaviate(self.cache_dir)

    def start(self) -> int:
        """Launch the server detached; returns its pid."""
        binary = self.install()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(binary), "--host", self.host, "--port", str(self.http_port), "--scheme", "http"]
        return self.process.start(argv, env=self._environment(), cwd=self.state_dir)

    def port_in_use(self) -> bool:
        """True when something, ours or not, listens on the HTTP port."""
        return port_is_open(self.host, self.http_port)

    def is_ready(self, *, timeout_s: float = 5.0) -> bool:
        """True when the readiness endpoint answers 200 and the gRPC port (the v4 client needs it) is open.

        Weaviate answers 503 on /v1/.well-known/ready until its schema (Raft) and shards are loaded.
        """
        try:
            with urllib.request.urlopen(f"{self.http_url}/v1/.well-known/ready", timeout=timeout_s) as reply:
                http_ready = reply.status == 200
        except (urllib.error.URLError, OSError):
            return False
        return http_ready and port_is_open(self.host, self.grpc_port)

    def _environment(self) -> dict[str, str]:
        """The server's configuration (Weaviate is configured only through environment variables).

        Built from scratch rather than inherited: a stray variable in a developer's shell (Weaviate
        reads well over a hundred) must not change how the local node behaves.
        """
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.state_dir)),
            "PERSISTENCE_DATA_PATH": str(self.data_dir),
            # Vectors come from the project's own embedding model, never from a Weaviate module.
            "DEFAULT_VECTORIZER_MODULE": "none",
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "DISABLE_TELEMETRY": "true",
            "QUERY_DEFAULTS_LIMIT": "25",
            "GRPC_PORT": str(self.grpc_port),
            # One node that forms its own Raft cluster, gossiping on loopback only.
            "CLUSTER_HOSTNAME": _NODE_NAME,
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": self.host,
            "CLUSTER_GOSSIP_BIND_PORT": str(self.gossip_port),
            "CLUSTER_DATA_BIND_PORT": str(self.data_port),
            "RAFT_PORT": str(self.raft_port),
            "RAFT_INTERNAL_RPC_PORT": str(self.raft_internal_rpc_port),
            "RAFT_JOIN": _NODE_NAME,
            "RAFT_BOOTSTRAP_EXPECT": "1",
            # The default multiplier (5) stretches Raft timeouts to ride out network delays between
            # nodes; a lone node on loopback has none, and would wait 5-10 s for its own election
            # on every start.
            "RAFT_TIMEOUTS_MULTIPLIER": "1",
            # The pprof listener would otherwise take port 6060 on every interface.
            "GO_PROFILING_DISABLE": "true",
            # Share two cores with Kafka and the services, and keep the heap bounded: a dev node
            # holds test corpora, not production indexes.
            "GOMAXPROCS": str(min(2, os.cpu_count() or 1)),
            "GOMEMLIMIT": "1GiB",
            "LOG_LEVEL": "info",
        }
