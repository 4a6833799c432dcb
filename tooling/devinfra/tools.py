"""Command-line tools the chart, contract and alert-rule checks need: Helm, buf and promtool.

Each `ensure_*` returns the path of a working binary under `<cache_dir>/tools/bin`, building or
extracting it on the first call only. Helm and buf are compiled from their Go modules; promtool is
taken out of Debian's `prometheus` package without installing (and so without starting) a server.
Binary names carry the version, so bumping a pin below builds the new one instead of trusting a
stale file.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from filelock import FileLock

from tooling.devinfra.gotools import ToolUnavailable, go_install

__all__ = ["ToolUnavailable", "ensure_buf", "ensure_helm", "ensure_promtool", "tools_bin_dir"]

HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.21.4"
BUF_MODULE = "github.com/bufbuild/buf/cmd/buf"
BUF_VERSION = "v1.75.0"
# promtool comes from whatever `prometheus` version the machine's Debian release carries
# (bookworm: 2.42); the cached copy is kept until the cache is cleared.
PROMTOOL_DEBIAN_PACKAGE = "prometheus"


def tools_bin_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "tools" / "bin"


def _log_path(cache_dir: Path, name: str) -> Path:
    logs = Path(cache_dir) / "tools" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{name}.log"


def _ensure_go_tool(cache_dir: Path, module: str, version: str, name: str) -> Path:
    bin_dir = tools_bin_dir(cache_dir)
    binary = f"{name}-{version}"
    target = bin_dir / binary
    if target.exists():
        return target
    with FileLock(bin_dir / f".{name}.lock"):
        return go_install(module, version, binary, bin_dir, log_path=_log_path(cache_dir, binary))


def ensure_helm(cache_dir: Path) -> Path:
    """Helm 3, built from source. It defaults to Kubernetes 1.20 (no version ldflags): pass --kube-version."""
    return _ensure_go_tool(cache_dir, HELM_MODULE, HELM_VERSION, "helm")


def ensure_buf(cache_dir: Path) -> Path:
    """buf, for protobuf lint, generation and breaking-change checks."""
    return _ensure_go_tool(cache_dir, BUF_MODULE, BUF_VERSION, "buf")


def ensure_promtool(cache_dir: Path) -> Path:
    """promtool from Debian's `prometheus` package, extracted rather than installed."""
    bin_dir = tools_bin_dir(cache_dir)
    target = bin_dir / "promtool"
    if target.exists():
        return target
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise ToolUnavailable(
            "promtool is taken from Debian's `prometheus` package, which needs apt-get and dpkg-deb; "
            "on another system install promtool yourself (it ships in every Prometheus release) and "
            f"copy or link it to {target}"
        )
    log_path = _log_path(cache_dir, "promtool")
    with FileLock(bin_dir / ".promtool.lock"):
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(prefix="promtool-") as tmp:
            work = Path(tmp)
            deb = _apt_download(apt_get, PROMTOOL_DEBIAN_PACKAGE, work, log_path)
            extracted = work / "root"
            if _run([dpkg_deb, "-x", str(deb), str(extracted)], cwd=work, log_path=log_path) != 0:
                raise ToolUnavailable(f"`dpkg-deb -x {deb.name}` failed (log: {log_path})")
            source = extracted / "usr" / "bin" / "promtool"
            if not source.is_file():
                raise ToolUnavailable(f"{deb.name} holds no usr/bin/promtool (log: {log_path})")
            staging = bin_dir / ".staging-promtool"
            shutil.copy2(source, staging)
            staging.chmod(0o755)
            staging.rename(target)
    return target


def _apt_download(apt_get: str, package: str, work: Path, log_path: Path) -> Path:
    """`apt-get download` the package; refresh the package lists once if apt does not know it yet."""
    if _run([apt_get, "download", package], cwd=work, log_path=log_path) != 0:
        # A fresh machine often has no lists; `apt-get update` needs root, so say so if it fails.
        if _run([apt_get, "update"], cwd=work, log_path=log_path) != 0:
            raise ToolUnavailable(
                f"`apt-get download {package}` failed and `apt-get update` could not refresh the "
                f"package lists (run it as root, then try again; log: {log_path})"
            )
        if _run([apt_get, "download", package], cwd=work, log_path=log_path) != 0:
            raise ToolUnavailable(f"`apt-get download {package}` failed (log: {log_path})")
    debs = sorted(work.glob(f"{package}_*.deb"))
    if not debs:
        raise ToolUnavailable(f"`apt-get download {package}` left no .deb in {work} (log: {log_path})")
    return debs[-1]


def _run(command: list[str], *, cwd: Path, log_path: Path) -> int:
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
