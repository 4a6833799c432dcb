"""Headless Chromium for the browser tests: Debian's `chromium` and `chromium-driver`, driven by Selenium.

The browser and its driver come from the same Debian source package, so their versions always
match; that is why they are taken from apt and never downloaded. Selenium Manager (which would
fetch a driver from the internet) is kept out by giving the Service the driver's path explicitly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from tooling.devinfra.gotools import ToolUnavailable

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

__all__ = ["CHROMEDRIVER_PATH", "CHROMIUM_PATH", "ToolUnavailable", "ensure_chromium", "headless_chrome"]

CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMEDRIVER_PATH = Path("/usr/bin/chromedriver")
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
INSTALL_COMMAND = f"apt-get install -y --no-install-recommends {' '.join(DEBIAN_PACKAGES)}"
WINDOW_SIZE = (1400, 1000)

# `apt-get update` is slow and its lists stay fresh for a process's lifetime: run it at most once.
_apt_lists_refreshed = False


def ensure_chromium(cache_dir: Path | None = None) -> tuple[Path, Path]:
    """The paths of Debian's Chromium and its chromedriver, installing both with apt when missing.

    Installs only as root on a machine with apt-get (output to `<cache_dir>/tools/logs/chromium.log`);
    anywhere else it raises ToolUnavailable naming the command to run.
    """
    found = _installed()
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        why = "apt-get is not available" if apt_get is None else "installing needs root"
        raise ToolUnavailable(
            f"the browser tests need Debian's Chromium and its driver ({CHROMIUM_PATH}, {CHROMEDRIVER_PATH}) "
            f"and {why}: run `sudo apt-get update && sudo {INSTALL_COMMAND}`, then try again"
        )
    cache_dir = _cache_dir(cache_dir)
    log_path = _log_path(cache_dir)
    with FileLock(cache_dir / "tools" / "bin" / ".chromium.lock"):
        found = _installed()  # another process may have installed it while we waited for the lock
        if found is not None:
            return found
        _apt_install(apt_get, log_path)
        found = _installed()
    if found is None:
        raise ToolUnavailable(
            f"`{INSTALL_COMMAND}` finished but left no {CHROMIUM_PATH} and {CHROMEDRIVER_PATH} (log: {log_path})"
        )
    return found


def headless_chrome(
    chromium_path: Path | None = None,
    chromedriver_path: Path | None = None,
    *,
    log_path: Path | None = None,
) -> Chrome:
    """A Selenium webdriver on headless Chromium, the window a fixed 1400x1000 so screenshots compare.

    Without paths it calls `ensure_chromium()`. `log_path` receives chromedriver's own log.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if chromium_path is None or chromedriver_path is None:
        chromium_path, chromedriver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium_path)
    options.add_argument("--headless=new")
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    options.add_argument("--disable-dev-shm-usage")  # containers give /dev/shm 64 MB, too small for tabs
    options.add_argument(f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")
    options.add_argument("--lang=en-US")
    options.add_argument("--no-first-run")
    options.add_argument("--disable-extensions")
    options.add_argument("--disable-background-networking")  # no update or safe-browsing calls out
    options.add_argument("--password-store=basic")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    # An explicit driver path: Selenium Manager is skipped and never tries to download a driver.
    service = Service(executable_path=str(chromedriver_path),
                      log_output=str(log_path) if log_path is not None else subprocess.DEVNULL)
    return webdriver.Chrome(options=options, service=service)


def _installed() -> tuple[Path, Path] | None:
    if _executable(CHROMIUM_PATH) and _executable(CHROMEDRIVER_PATH):
        return CHROMIUM_PATH, CHROMEDRIVER_PATH
    return None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _apt_install(apt_get: str, log_path: Path) -> None:
    global _apt_lists_refreshed
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_lists_refreshed:
        if _run([apt_get, "update"], env=env, log_path=log_path) != 0:
            raise ToolUnavailable(f"`apt-get update` failed (log: {log_path}); then run `{INSTALL_COMMAND}`")
        _apt_lists_refreshed = True
    command = [apt_get, "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES]
    if _run(command, env=env, log_path=log_path) != 0:
        raise ToolUnavailable(f"`{INSTALL_COMMAND}` failed (log: {log_path})")


def _cache_dir(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from tooling.settings import FleetSettings

    return FleetSettings().cache_dir


def _log_path(cache_dir: Path) -> Path:
    logs = cache_dir / "tools" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / "chromium.log"


def _run(command: list[str], *, env: dict[str, str], log_path: Path) -> int:
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False).returncode
