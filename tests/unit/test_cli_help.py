"""The `supportflow` command: every command and option says what it does, `--help` works at every
level, and the commands the README documents exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from tooling.cli import app, main

README = Path(__file__).resolve().parents[2] / "README.md"


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple]:
    """(words, command) for the command and every command under it."""
    found = [(path, command)]
    if is_group(command):
        for name, sub in command.commands.items():
            found += command_paths(sub, path + (name,))
    return found


def is_group(command) -> bool:
    return hasattr(command, "commands")


COMMANDS = command_paths(typer.main.get_command(app))


def test_the_tree_holds_every_command_the_argparse_version_had():
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"run", "down", "dev up", "dev down", "dev status", "topics create", "proto generate", "proto check",
            "demo", "classifier train", "classifier predict", "classifier bench", "models fetch", "kb ingest",
            "kb search", "kb bench", "kb sync", "cases ingest", "cases search", "draft", "kpis", "report",
            "feedback"} <= paths


@pytest.mark.parametrize("path, command", COMMANDS, ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_help_exits_0_and_describes_the_command(path, command, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out
    assert command.help and command.help.split()[0] in out
    for param in command.params:
        if param.name != "help":
            assert getattr(param, "help", None), f"supportflow {' '.join(path)}: {param.name} has no help text"


def test_an_unknown_service_or_option_is_a_usage_error(capsys):
    assert main(["run", "no-such-service"]) == 2
    assert "no service 'no-such-service'" in capsys.readouterr().err
    assert main(["kb", "search", "q", "--no-such-option"]) == 2
    assert main(["kb", "search", "q"]) == 2  # --tenant is required


def test_the_demo_refuses_a_tenant_without_sample_tickets_or_with_input_before_starting_anything(capsys):
    assert main(["demo", "--tenant", "no-such-tenant"]) == 2
    assert "tenant 'no-such-tenant' has no sample tickets" in capsys.readouterr().err
    assert main(["demo", "--tenant", "retail", "--input", "x.jsonl"]) == 2
    assert "give --tenant or --input, not both" in capsys.readouterr().err


def test_every_command_the_readme_documents_exists():
    """`supportflow a b ...` in the README resolves to a command (words after it may be arguments)."""
    names = {path: command for path, command in COMMANDS}
    documented = re.findall(r"`(?:bin/)?supportflow ([a-z][a-z -]*)", README.read_text(encoding="utf-8"))
    assert documented
    for words in documented:
        words = [w for w in words.split() if w != "test"]  # `bin/supportflow test` is the script's own
        if not words:
            continue
        assert (words[0],) in names, f"the README documents `supportflow {' '.join(words)}`, which does not exist"
        if is_group(names[(words[0],)]) and len(words) > 1:
            assert (words[0], words[1]) in names, f"no command `supportflow {words[0]} {words[1]}`"


def test_invalid_settings_end_the_command_naming_every_bad_variable(monkeypatch, capsys):
    monkeypatch.setenv("SUPPORTFLOW_TOPIC_PARTITIONS", "many")
    monkeypatch.setenv("SUPPORTFLOW_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("SUPPORTFLOW_DRAFTER_WORKERS", "-")
    assert main(["topics", "create"]) == 2
    err = capsys.readouterr().err
    assert "SUPPORTFLOW_TOPIC_PARTITIONS='many'" in err and "SUPPORTFLOW_DRAFTER_WORKERS='-'" in err
    assert "KAFKA_BOOTSTRAP" not in err
