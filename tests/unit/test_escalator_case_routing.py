"""Case types and target queues from the shipped escalation.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from tooling.sample_data import banking77_rows

from services.escalator.case_routing import case_type_for, target_queue_for
from services.escalator.config import ConfigError, EscalationConfig

CONFIG = EscalationConfig.load()
ERROR = tk.NormalizedTicket(identifiers=[tk.Identifier(kind="error_code", value="E42")])


def cls(intent, *flags):
    return tk.Classification(intent=intent, risk_flags=list(flags))


def test_every_banking77_intent_has_a_queue():
    intents = {row["category"] for row in banking77_rows()}
    assert len(intents) == 77
    assert sorted(intents - set(CONFIG.intent_queues)) == []


def test_queue_precedence_risk_then_incident_then_intent_then_default():
    assert target_queue_for(cls("card_arrival"), "", CONFIG) == "cards"
    assert target_queue_for(cls("something_new"), "", CONFIG) == "general-support"
    assert target_queue_for(cls("card_arrival"), "inc-1", CONFIG) == "incident-response"
    assert target_queue_for(cls("card_arrival", tk.RISK_FLAG_LEGAL), "inc-1", CONFIG) == "legal"
    # security is listed before billing_dispute in the config, so it wins
    both = cls("card_arrival", tk.RISK_FLAG_BILLING_DISPUTE, tk.RISK_FLAG_SECURITY)
    assert target_queue_for(both, "", CONFIG) == "fraud-and-security"
    assert target_queue_for(cls("card_arrival", tk.RISK_FLAG_CHURN), "", CONFIG) == "cards"


def test_case_type_precedence():
    empty = tk.NormalizedTicket()
    assert case_type_for(cls("card_arrival"), empty, "", CONFIG) == ev.CASE_TYPE_EXPECTED_BEHAVIOUR
    assert case_type_for(cls("apple_pay_or_google_pay"), empty, "", CONFIG) == ev.CASE_TYPE_CONFIGURATION_MISTAKE
    assert case_type_for(cls("card_arrival"), ERROR, "", CONFIG) == ev.CASE_TYPE_PRODUCT_DEFECT
    assert case_type_for(cls("card_arrival", tk.RISK_FLAG_BILLING_DISPUTE), ERROR, "", CONFIG) == ev.CASE_TYPE_POLICY_EXCEPTION
    assert case_type_for(cls("request_refund", tk.RISK_FLAG_LEGAL), ERROR, "inc-1", CONFIG) == ev.CASE_TYPE_INCIDENT


def test_a_config_with_an_unknown_case_type_fails_at_load(tmp_path: Path):
    bad = tmp_path / "escalation.yaml"
    bad.write_text("default_queue: q\nincident_queue: i\ndefault_case_type: bug\n")
    with pytest.raises(ConfigError, match="unknown case type 'bug'"):
        EscalationConfig.load(bad)
