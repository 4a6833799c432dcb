"""The contracts in proto/: generated code is fresh, style holds, and breaking changes are caught."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from supportflow.contracts import codegen
from tooling.devinfra.tools import ensure_buf

PROTO = codegen.PROTO_ROOT
BASELINE = PROTO / "breaking-baseline.json"


@pytest.fixture(scope="module")
def buf(base_settings) -> Path:
    return ensure_buf(base_settings.cache_dir)


def run(command, cwd):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generated_code_matches_proto():
    codegen.check()  # raises StaleContracts naming each stale file


def test_buf_lint(buf):
    result = run([str(buf), "lint", "."], PROTO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_the_released_baseline(buf):
    result = run([str(buf), "breaking", ".", "--against", str(BASELINE)], PROTO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_breaking_change_is_detected(buf, tmp_path):
    copy = tmp_path / "proto"
    shutil.copytree(PROTO, copy)
    ticket = copy / "supportflow" / "contracts" / "v1" / "ticket.proto"
    text = ticket.read_text()
    assert "string customer_id = 4;" in text
    ticket.write_text(text.replace("string customer_id = 4;", "string customer_id = 40;"))
    result = run([str(buf), "breaking", ".", "--against", str(BASELINE)], copy)
    assert result.returncode != 0
    assert "customer_id" in result.stdout + result.stderr
