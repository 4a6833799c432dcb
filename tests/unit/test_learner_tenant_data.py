"""Tenant data for the KPI panel: baselines and repetition lexicons are validated with clear errors,
the demo bank's baseline loads, and the default lexicon keeps its labelled set's results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supportflow.contracts.v1 import events_pb2 as ev

from services.learner.tenant_data import TenantData, TenantDataError, default_lexicon, parse_baseline, parse_lexicon

ROOT = Path(__file__).resolve().parents[2]
LABELLED = Path(__file__).parent / "fixtures" / "repetition-labelled.jsonl"


def test_the_demo_banks_baseline_loads():
    baseline = TenantData(ROOT / "tenants").baseline("demo-bank")
    assert baseline is not None and baseline.source
    assert baseline.csat("faq_bounded", ev.CSAT_LATENCY_AT_RESOLUTION) == 80.0
    assert baseline.csat("account_specific", ev.CSAT_LATENCY_DELAYED) == 74.0
    assert baseline.handle_time("account_specific", "escalated") == 1800.0
    assert baseline.handle_time("account_specific", "bot") == 60.0  # from the default


def test_a_tenant_without_files_has_no_baseline_and_the_default_lexicon(tmp_path):
    data = TenantData(tmp_path)
    assert data.baseline("nobody") is None
    assert data.lexicon("nobody") == default_lexicon()
    assert TenantData(None).baseline("demo-bank") is None


@pytest.mark.parametrize("document, message", [
    ({"csat": {"default": {"at_resolution": 120}}}, r"csat.default.at_resolution` = 120 is outside \[0, 100\]"),
    ({"csat": {"default": {"at_resolution": "eighty"}}}, "must be a number"),
    ({"csat": {"default": {"soon": 80}}}, "unknown keys"),
    ({"csat": {"archetypes": {"vip": {"at_resolution": 80}}}}, "unknown archetype 'vip'"),
    ({"handle_time_seconds": {"default": {"bot": 0}}}, r"outside \(0, inf\]"),
    ({"csat": {}, "deflection": 0.5}, r"unknown keys \['deflection'\]"),
    ([80, 78], "expected a mapping"),
])
def test_a_malformed_baseline_is_refused_naming_the_field(document, message):
    with pytest.raises(TenantDataError, match=message):
        parse_baseline(document, "kpi-baseline.yaml")


def test_a_malformed_file_stops_the_start_with_its_path(tmp_path):
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "kpi-baseline.yaml").write_text("csat: [unclosed\n")
    with pytest.raises(TenantDataError, match="acme/kpi-baseline.yaml: not valid YAML"):
        TenantData(tmp_path).baseline("acme")
    with pytest.raises(TenantDataError, match="acme/kpi-baseline.yaml"):
        TenantData(tmp_path).check_all()


def test_the_repositorys_tenants_all_check():
    assert "demo-bank" in TenantData(ROOT / "tenants").check_all()  # and no tenant file is malformed


@pytest.mark.parametrize("document, message", [
    ({"patterns": ["(unclosed"]}, "pattern '\\(unclosed'"),
    ({"phrases": []}, "the lexicon is empty"),
    ({"phrases": [""]}, "non-empty strings"),
    ({"words": ["x"]}, "expected a mapping"),
])
def test_a_malformed_lexicon_is_refused(document, message):
    with pytest.raises(TenantDataError, match=message):
        parse_lexicon(document, "repetition-lexicon.yaml")


def test_a_tenant_lexicon_can_extend_the_default():
    extended = parse_lexicon({"phrases": ["zoals gezegd"], "include_default": True}, "x", default_lexicon())
    assert extended.matches("Zoals gezegd, mijn kaart") and extended.matches("As I said, my card")


def test_matching_ignores_case_spacing_and_curly_apostrophes():
    lexicon = default_lexicon()
    assert lexicon.matches("I\u2019ve   ALREADY explained this")
    assert not lexicon.matches("I've already sent the money but it has not arrived")  # "already" about money


def test_the_default_lexicon_on_its_labelled_set():
    # In-sample since the lexicon's one revision (docs/kpi-panel.md): guards against regressions.
    rows = [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]
    lexicon = default_lexicon()
    missed = [r["text"] for r in rows if r["repeated"] and not lexicon.matches(r["text"])]
    wrong = [r["text"] for r in rows if not r["repeated"] and lexicon.matches(r["text"])]
    assert sum(r["repeated"] for r in rows) == 7 and len(rows) == 40
    assert (missed, wrong) == ([], [])
