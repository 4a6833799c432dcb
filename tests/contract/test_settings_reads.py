"""Each service reads its settings from a class of its own (issue 27: per-service settings), so
what it reads must be declared there: a read of a knob only the whole fleet's settings hold would
pass every test that runs services from the fleet and fail in a deployment, where the service's
process reads its own class. Every `settings.<name>` (and `self._settings.<name>`) in a service's
code names a field, property or method of that service's class; the platform's code reads only
the settings classes the platform defines, and each library only its own."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from encoders.settings import EncoderSettings
from integrations.settings import ClaudeSettings, CrmSettings
from supportflow import settings as platform_settings
from supportflow.settings import Settings
from tooling.settings import SERVICE_SETTINGS, FleetSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_NAMES = {"settings", "_settings"}


def settings_reads(folder: Path) -> list[tuple[str, int, str]]:
    """(file, line, attribute) for every attribute read off a name `settings` or `self._settings`."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "settings") or (
                    isinstance(owner, ast.Attribute) and owner.attr in SETTINGS_NAMES
                    and isinstance(owner.value, ast.Name) and owner.value.id == "self"):
                found.append((str(path.relative_to(folder.parent)), node.lineno, node.attr))
    return found


def undeclared(folder: Path, *settings_classes: type) -> list[str]:
    """The reads in `folder` that none of `settings_classes` declares (a field, property or method)."""
    names = " or ".join(cls.__name__ for cls in settings_classes)
    return [f"{file}:{line} reads settings.{name}, which {names} does not declare"
            for file, line, name in settings_reads(folder)
            if not any(hasattr(cls, name) or name in cls.model_fields for cls in settings_classes)]


@pytest.mark.parametrize("service", sorted(SERVICE_SETTINGS))
def test_a_service_reads_only_what_its_own_settings_declare(service: str) -> None:
    folder = ROOT / "services" / service
    assert settings_reads(folder), f"{service} reads no settings at all: is the check looking in the right place?"
    assert undeclared(folder, SERVICE_SETTINGS[service]) == []


# Every settings class the platform defines: each platform module reads its own part.
PLATFORM_SETTINGS = tuple(cls for cls in vars(platform_settings).values()
                          if isinstance(cls, type) and issubclass(cls, Settings))


@pytest.mark.parametrize(("package", "settings_classes"), [("supportflow", PLATFORM_SETTINGS),
                                                          ("encoders", (EncoderSettings,)),
                                                          ("integrations", (ClaudeSettings, CrmSettings)),
                                                          ("conversation", (Settings,))])
def test_the_platform_and_the_libraries_read_only_their_own_settings(package: str, settings_classes: tuple) -> None:
    assert undeclared(ROOT / package, *settings_classes) == []


def test_the_check_catches_a_read_of_another_services_knob(tmp_path: Path) -> None:
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "main.py").write_text("def build(settings):\n    return settings.weaviate_http_port, settings.topic_prefix\n")
    problems = undeclared(folder, SERVICE_SETTINGS["drafter"])
    assert len(problems) == 1 and "weaviate_http_port" in problems[0]


def test_every_setting_is_read_somewhere() -> None:
    """A variable nothing reads is a knob an operator sets in vain (issue 27: no dead settings)."""
    packages = [pattern.rstrip("*") for pattern in tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["packages"]["find"]["include"]]
    read = {node.attr for package in packages
            for path in (ROOT / package).rglob("*.py") if not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Attribute)}
    assert sorted(set(FleetSettings.model_fields) - read) == []
