"""The Prometheus alert rules are valid, behave as their promtool tests say, and they and the
Grafana dashboard only use metrics the services expose (the platform's included)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.metrics import MetricWrapperBase

from supportflow import observability
from tooling.devinfra.tools import ToolUnavailable, ensure_promtool
from tooling.settings import FleetSettings

from services.classifier import metrics as classifier_metrics
from services.delivery import metrics as delivery_metrics
from services.escalator import metrics as escalator_metrics
from services.gateway import metrics as gateway_metrics
from services.learner import metrics as learner_metrics
from services.learner.kpis import KPI_NAMES

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "helm" / "supportflow" / "files"  # the chart renders them as a PrometheusRule
RULES = RULES_DIR / "supportflow-rules.yaml"
RULES_TEST = RULES_DIR / "supportflow-rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "supportflow-kpis.json"
METRIC = re.compile(r"\bsupportflow_[a-z0-9_]+")


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return ensure_promtool(FleetSettings.from_env().cache_dir)
    except ToolUnavailable as exc:
        pytest.skip(f"promtool unavailable: {exc}")


def _run(promtool: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check(promtool):
    result = _run(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests(promtool):
    result = _run(promtool, "test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def _exposed(module: ModuleType) -> set[str]:
    names = set()
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                if family.type == "counter":
                    names.add(family.name + "_total")
                elif family.type == "histogram":
                    names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
                else:
                    names.add(family.name)
    return names


EXPOSED = (set(learner_metrics.metric_names()) | _exposed(escalator_metrics) | _exposed(classifier_metrics)
           | _exposed(gateway_metrics) | _exposed(delivery_metrics) | _exposed(observability))


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_rules_use_only_exposed_metrics():
    used = set(METRIC.findall(RULES.read_text()))
    assert used and used <= EXPOSED, sorted(used - EXPOSED)


def test_dashboard_uses_only_exposed_metrics_and_shows_every_kpi():
    used = set(METRIC.findall("\n".join(_dashboard_expressions())))
    assert used <= EXPOSED, sorted(used - EXPOSED)
    missing = {learner_metrics.kpi_metric_name(k) for k in KPI_NAMES} - used
    assert not missing, sorted(missing)


def test_dashboard_panels_have_unique_ids_and_a_datasource():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] if p["type"] != "row")
