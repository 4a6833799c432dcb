"""Build Go command-line tools (Weaviate, Helm, buf...) with `go install` into the cache, once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class ToolUnavailable(RuntimeError):
    """A tool the project needs cannot be installed on this machine; the message says what to do."""


def go_install(module: str, version: str, binary: str, bin_dir: Path, *, log_path: Path | None = None) -> Path:
    """Return the path of `binary`, building `module@version` into `bin_dir` if it is not there yet.

    Builds go to a temporary name first so an interrupted build never leaves a half-written binary
    that later runs would trust.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / binary
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise ToolUnavailable(
            f"building {binary} needs the Go toolchain (1.22 or newer): install Go "
            "(https://go.dev/doc/install or `apt-get install golang`) and run the command again"
        )
    staging = bin_dir / f".staging-{binary}"
    shutil.rmtree(staging, ignore_errors=True)  # never trust what an interrupted build left
    staging.mkdir()
    env = dict(os.environ, CGO_ENABLED="0", GOBIN=str(staging))
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        result = subprocess.run(
            [go, "install", f"{module}@{version}"], env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    finally:
        if log_path:
            log.close()
    built = next((p for p in staging.iterdir() if p.is_file()), None)
    if result.returncode != 0 or built is None:
        where = f" (build log: {log_path})" if log_path else ""
        raise ToolUnavailable(f"`go install {module}@{version}` failed with exit code {result.returncode}{where}")
    built.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target
