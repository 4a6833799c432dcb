"""The routing policy: rules, file validation, hot reload and run-time overrides."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent, new_meta

from services.classifier import input_guard, metrics
from services.classifier.handlers import routing_override_handler
from services.classifier.routing import (
    DEFAULT_POLICY_PATH,
    InvalidOverride,
    PolicyError,
    PolicyStore,
    RoutingFacts,
    decide_route,
    load_policy,
    parse_policy,
)

POLICY = load_policy(DEFAULT_POLICY_PATH)
POLICY_DOC = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def facts(**changes) -> RoutingFacts:
    base = RoutingFacts(
        intent="exchange_rate",
        confidence=0.93,
        top_intents=[("exchange_rate", 0.93), ("exchange_charge", 0.04)],
        archetype=tk.ARCHETYPE_FAQ_BOUNDED,
        tier=tk.CUSTOMER_TIER_STANDARD,
        risk_flags=[],
        missing_identifiers=[],
        input_flags=[],
    )
    return replace(base, **changes)


def test_a_confident_faq_ticket_follows_its_archetype_automation() -> None:
    decision = decide_route(facts(), POLICY)
    assert decision.route == tk.ROUTE_AUTO_RESPOND
    assert decision.reason == "archetype faq_bounded: auto_respond (policy file)"


def test_below_the_confidence_threshold_an_agent_reviews() -> None:
    below = decide_route(facts(confidence=0.69), POLICY)
    at = decide_route(facts(confidence=0.70), POLICY)

    assert below.route == tk.ROUTE_DRAFT_FOR_REVIEW
    assert "0.69" in below.reason and "0.70" in below.reason
    assert at.route == tk.ROUTE_AUTO_RESPOND


def test_a_held_confidence_says_what_it_was_held_from() -> None:
    held = decide_route(facts(confidence=0.684, calibrated_confidence=0.862), POLICY)
    plain = decide_route(facts(confidence=0.684, calibrated_confidence=0.684), POLICY)

    assert held.route == plain.route == tk.ROUTE_DRAFT_FOR_REVIEW
    assert "held there from a calibrated 0.862" in held.reason
    assert "held" not in plain.reason


def test_the_threshold_comes_from_the_policy() -> None:
    strict = parse_policy(POLICY_DOC | {"confidence_threshold": 0.95})
    assert decide_route(facts(confidence=0.93), strict).route == tk.ROUTE_DRAFT_FOR_REVIEW


def test_always_escalate_intents_escalate_even_with_low_confidence() -> None:
    decision = decide_route(
        facts(intent="lost_or_stolen_card", confidence=0.4, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC,
              top_intents=[("lost_or_stolen_card", 0.4)]),
        POLICY,
    )
    assert decision.route == tk.ROUTE_ESCALATE
    assert decision.reason == "always-escalate intent lost_or_stolen_card"


def test_an_always_escalate_runner_up_escalates_only_above_its_probability_floor() -> None:
    likely = facts(intent="card_arrival", archetype=tk.ARCHETYPE_REPETITIVE, confidence=0.71,
                   top_intents=[("card_arrival", 0.71), ("lost_or_stolen_card", 0.26)])
    unlikely = replace(likely, top_intents=[("card_arrival", 0.71), ("lost_or_stolen_card", 0.10)])

    assert decide_route(likely, POLICY).route == tk.ROUTE_ESCALATE
    assert decide_route(unlikely, POLICY).route == tk.ROUTE_AUTO_RESPOND


@pytest.mark.parametrize(
    "flag", [tk.RISK_FLAG_SECURITY, tk.RISK_FLAG_BILLING_DISPUTE, tk.RISK_FLAG_LEGAL, tk.RISK_FLAG_CHURN]
)
def test_risk_flags_escalate(flag: int) -> None:
    decision = decide_route(facts(risk_flags=[flag]), POLICY)
    assert decision.route == tk.ROUTE_ESCALATE
    assert decision.reason.startswith("risk flags: ")


def test_risk_flags_that_the_policy_does_not_list_do_not_escalate() -> None:
    policy = parse_policy(POLICY_DOC | {"escalate_on_risk_flags": ["security"]})
    assert decide_route(facts(risk_flags=[tk.RISK_FLAG_CHURN]), policy).route == tk.ROUTE_AUTO_RESPOND


def test_every_escalation_reason_is_listed() -> None:
    decision = decide_route(
        facts(intent="compromised_card", top_intents=[("compromised_card", 0.9)], risk_flags=[tk.RISK_FLAG_LEGAL]),
        POLICY,
    )
    assert decision.reason == "always-escalate intent compromised_card; risk flags: legal"


def test_prompt_injection_escalates_by_default_and_can_be_set_to_review() -> None:
    injected = facts(input_flags=[input_guard.PROMPT_INJECTION], risk_flags=[tk.RISK_FLAG_PROMPT_INJECTION],
                     injection_styles=["instruction_override"])
    review_policy = parse_policy(POLICY_DOC | {"prompt_injection_route": "draft_for_review"})

    escalated = decide_route(injected, POLICY)
    reviewed = decide_route(injected, review_policy)

    assert escalated.route == tk.ROUTE_ESCALATE
    assert escalated.reason == "prompt injection (instruction_override) in the ticket"
    assert reviewed.route == tk.ROUTE_DRAFT_FOR_REVIEW
    with pytest.raises(PolicyError, match="prompt_injection_route"):
        parse_policy(POLICY_DOC | {"prompt_injection_route": "auto_respond"})


def test_missing_identifiers_ask_a_follow_up_once_the_intent_is_trusted() -> None:
    missing = ["transaction_id", "amount", "date"]
    confident = facts(intent="transaction_charged_twice", archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC, missing_identifiers=missing)
    unsure = replace(confident, confidence=0.5)

    ask_first = replace(POLICY, missing_identifiers="ask_first")
    decision = decide_route(confident, ask_first)
    assert decision.route == tk.ROUTE_ASK_FOLLOW_UP
    assert decision.reason == "transaction_charged_twice needs one of: transaction_id, amount, date"
    assert decide_route(unsure, ask_first).route == tk.ROUTE_DRAFT_FOR_REVIEW
    # investigate_first (the shipped policy): the archetype's level, the missing identifiers said
    looked = decide_route(confident, POLICY)
    assert (looked.route, looked.reason) == (tk.ROUTE_DRAFT_FOR_REVIEW, (
        "transaction_charged_twice needs one of: transaction_id, amount, date, which the investigation looks for "
        "first; archetype account_specific: draft_for_review (policy file)"))


def test_no_readable_text_asks_the_customer_to_describe_the_problem() -> None:
    decision = decide_route(
        facts(intent="", confidence=0.0, top_intents=[], archetype=tk.ARCHETYPE_UNSPECIFIED, input_flags=[input_guard.EMPTY]),
        POLICY,
    )
    assert decision.route == tk.ROUTE_ASK_FOLLOW_UP
    assert "empty" in decision.reason


def test_an_unsupported_language_goes_to_a_human_with_the_language_named() -> None:
    decision = decide_route(
        facts(intent="", confidence=0.0, top_intents=[], archetype=tk.ARCHETYPE_UNSPECIFIED,
              input_flags=[input_guard.LANGUAGE_UNSUPPORTED], language="es"),
        POLICY,
    )
    assert decision.route == tk.ROUTE_ESCALATE
    assert "language 'es' is not supported" in decision.reason


@pytest.mark.parametrize(
    "tier, archetype, expected",
    [
        (tk.CUSTOMER_TIER_ENTERPRISE, tk.ARCHETYPE_FAQ_BOUNDED, tk.ROUTE_DRAFT_FOR_REVIEW),
        (tk.CUSTOMER_TIER_PREMIUM, tk.ARCHETYPE_FAQ_BOUNDED, tk.ROUTE_AUTO_RESPOND),
        (tk.CUSTOMER_TIER_STANDARD, tk.ARCHETYPE_ACCOUNT_SPECIFIC, tk.ROUTE_DRAFT_FOR_REVIEW),
    ],
)
def test_tier_overrides_cap_automation(tier: int, archetype: int, expected: int) -> None:
    decision = decide_route(facts(tier=tier, archetype=archetype), POLICY)
    assert decision.route == expected


def test_the_tier_cap_never_raises_automation_and_says_why_it_lowered_it() -> None:
    policy = parse_policy(POLICY_DOC | {"tier_overrides": {"enterprise": {"max_automation": "escalate"}}})
    decision = decide_route(facts(tier=tk.CUSTOMER_TIER_ENTERPRISE), policy)
    assert decision.route == tk.ROUTE_ESCALATE
    assert decision.reason.endswith("enterprise tier allows at most escalate")


def test_a_truncated_ticket_is_never_sent_without_review() -> None:
    decision = decide_route(facts(input_flags=[input_guard.TRUNCATED]), POLICY)
    assert decision.route == tk.ROUTE_DRAFT_FOR_REVIEW
    assert "truncated" in decision.reason


def test_the_kill_switch_in_the_file_escalates_its_archetype_only() -> None:
    doc = json.loads(json.dumps(POLICY_DOC))
    doc["archetypes"]["faq_bounded"]["kill_switch"] = True
    policy = parse_policy(doc)

    killed = decide_route(facts(), policy)
    other = decide_route(facts(intent="activate_my_card", archetype=tk.ARCHETYPE_REPETITIVE), policy)

    assert killed.route == tk.ROUTE_ESCALATE
    assert killed.reason == "kill switch on for archetype faq_bounded (policy file)"
    assert other.route == tk.ROUTE_AUTO_RESPOND


@pytest.mark.parametrize(
    "change, message",
    [
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"confidence_threshold": "high"}, "confidence_threshold"),
        ({"escalate_on_risk_flags": ["gossip"]}, "unknown flags"),
        ({"tier_overrides": {"platinum": {"max_automation": "escalate"}}}, "unknown tier"),
        ({"archetypes": {"repetitive": {"automation": "auto_respond"}}}, "exactly these entries"),
        ({"archetypes": {**POLICY_DOC["archetypes"], "faq_bounded": {"automation": "ask_follow_up"}}}, "automation"),
        ({"confidence_treshold": 0.7}, "unknown keys"),
        ({"supported_languages": []}, "supported_languages"),
    ],
)
def test_an_invalid_policy_is_refused_with_the_reason(change: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(POLICY_DOC | change)


# --- overrides ----------------------------------------------------------------------------------------


def override(action: int, archetype: int = tk.ARCHETYPE_FAQ_BOUNDED, *, route: int = 0, tenant: str = "rho-bank",
             override_id: str = "ovr-1") -> ev.RoutingOverride:
    return ev.RoutingOverride(
        meta=new_meta(tenant, "learner"), override_id=override_id, archetype=archetype, action=action, route=route,
        reason="CSAT slipped 4.1 points", issued_by="learner:guardrail",
    )


@pytest.fixture
def store(tmp_path: Path) -> PolicyStore:
    path = tmp_path / "routing_policy.yaml"
    path.write_text(DEFAULT_POLICY_PATH.read_text())
    return PolicyStore(path)


def test_set_automation_applies_to_its_tenant_and_archetype(store: PolicyStore) -> None:
    store.apply_override(override(ev.OVERRIDE_ACTION_SET_AUTOMATION, route=tk.ROUTE_DRAFT_FOR_REVIEW))

    pulled_back = decide_route(facts(), store.current("rho-bank"))
    other_tenant = decide_route(facts(), store.current("acme"))
    other_archetype = decide_route(facts(intent="activate_my_card", archetype=tk.ARCHETYPE_REPETITIVE), store.current("rho-bank"))

    assert pulled_back.route == tk.ROUTE_DRAFT_FOR_REVIEW
    assert pulled_back.reason == (
        "archetype faq_bounded: draft_for_review "
        "(override ovr-1 by learner:guardrail: CSAT slipped 4.1 points)"
    )
    assert other_tenant.route == tk.ROUTE_AUTO_RESPOND
    assert other_archetype.route == tk.ROUTE_AUTO_RESPOND


def test_an_override_for_every_tenant_applies_everywhere_and_a_tenant_override_wins(store: PolicyStore) -> None:
    store.apply_override(override(ev.OVERRIDE_ACTION_SET_AUTOMATION, route=tk.ROUTE_ESCALATE, tenant="*", override_id="g"))
    store.apply_override(override(ev.OVERRIDE_ACTION_SET_AUTOMATION, route=tk.ROUTE_DRAFT_FOR_REVIEW, override_id="t"))

    assert decide_route(facts(), store.current("acme")).route == tk.ROUTE_ESCALATE
    assert decide_route(facts(), store.current("rho-bank")).route == tk.ROUTE_DRAFT_FOR_REVIEW


def test_kill_switch_on_off_and_clear(store: PolicyStore) -> None:
    store.apply_override(override(ev.OVERRIDE_ACTION_SET_AUTOMATION, route=tk.ROUTE_DRAFT_FOR_REVIEW, override_id="a"))
    store.apply_override(override(ev.OVERRIDE_ACTION_KILL_SWITCH_ON, override_id="b"))
    killed = decide_route(facts(), store.current("rho-bank"))
    store.apply_override(override(ev.OVERRIDE_ACTION_KILL_SWITCH_OFF, override_id="c"))
    revived = decide_route(facts(), store.current("rho-bank"))
    store.apply_override(override(ev.OVERRIDE_ACTION_CLEAR, override_id="d"))
    cleared = decide_route(facts(), store.current("rho-bank"))

    assert killed.route == tk.ROUTE_ESCALATE and "override b" in killed.reason
    assert revived.route == tk.ROUTE_DRAFT_FOR_REVIEW  # the automation override is still in force
    assert cleared.route == tk.ROUTE_AUTO_RESPOND
    assert cleared.reason.endswith("(policy file)")


def test_kill_switch_off_overrides_a_kill_switch_in_the_file(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(POLICY_DOC))
    doc["archetypes"]["faq_bounded"]["kill_switch"] = True
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    store = PolicyStore(path)

    assert decide_route(facts(), store.current("rho-bank")).route == tk.ROUTE_ESCALATE
    store.apply_override(override(ev.OVERRIDE_ACTION_KILL_SWITCH_OFF))
    assert decide_route(facts(), store.current("rho-bank")).route == tk.ROUTE_AUTO_RESPOND


def test_each_override_is_audited_and_counted(store: PolicyStore, caplog: pytest.LogCaptureFixture) -> None:
    counter = metrics.OVERRIDES_APPLIED.labels("faq_bounded", "kill_switch_on")
    before = counter._value.get()
    with caplog.at_level(logging.INFO, logger="services.classifier.routing"):
        store.apply_override(override(ev.OVERRIDE_ACTION_KILL_SWITCH_ON, override_id="ovr-42"))

    [audit] = [r for r in caplog.records if getattr(r, "fields", {}).get("audit") == "routing_override"]
    assert audit.fields | {"event_id": "x"} == {
        "audit": "routing_override", "override_id": "ovr-42", "event_id": "x", "scope": "rho-bank",
        "archetype": "faq_bounded", "action": "kill_switch_on", "route": "", "reason": "CSAT slipped 4.1 points",
        "issued_by": "learner:guardrail",
    }
    assert counter._value.get() == before + 1


@pytest.mark.parametrize(
    "event",
    [
        override(ev.OVERRIDE_ACTION_KILL_SWITCH_ON, archetype=tk.ARCHETYPE_UNSPECIFIED),
        override(ev.OVERRIDE_ACTION_UNSPECIFIED),
        override(ev.OVERRIDE_ACTION_SET_AUTOMATION, route=tk.ROUTE_ASK_FOLLOW_UP),
        override(ev.OVERRIDE_ACTION_SET_AUTOMATION),
    ],
)
def test_meaningless_overrides_are_refused_and_dead_lettered(store: PolicyStore, event: ev.RoutingOverride) -> None:
    with pytest.raises(InvalidOverride):
        store.apply_override(event)
    with pytest.raises(InvalidEvent):
        routing_override_handler(store)(event)
    assert decide_route(facts(), store.current("rho-bank")).route == tk.ROUTE_AUTO_RESPOND


def test_the_override_handler_publishes_nothing_and_updates_the_store(store: PolicyStore) -> None:
    emitted = routing_override_handler(store)(override(ev.OVERRIDE_ACTION_KILL_SWITCH_ON))
    assert emitted == []
    assert store.current("rho-bank").archetypes[tk.ARCHETYPE_FAQ_BOUNDED].kill_switch is True


# --- hot reload ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rewrite(path: Path, doc: dict | str, bump_s: int) -> None:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump_s * 1_000_000_000))


def test_hot_reload_picks_up_a_changed_file_after_the_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_POLICY_PATH.read_text())
    clock = FakeClock()
    store = PolicyStore(path, check_interval_s=5, clock=clock)
    assert store.current().confidence_threshold == 0.7

    rewrite(path, POLICY_DOC | {"confidence_threshold": 0.85}, bump_s=1)
    clock.now += 1
    assert store.current().confidence_threshold == 0.7  # not checked yet: at most every 5 s
    clock.now += 5
    assert store.current().confidence_threshold == 0.85


def test_an_invalid_file_keeps_the_last_good_policy_until_it_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_POLICY_PATH.read_text())
    clock = FakeClock()
    store = PolicyStore(path, check_interval_s=5, clock=clock)
    store.apply_override(override(ev.OVERRIDE_ACTION_KILL_SWITCH_ON))
    invalid = metrics.POLICY_RELOADS.labels("invalid")
    before = invalid._value.get()

    with caplog.at_level(logging.ERROR, logger="services.classifier.routing"):
        caplog.clear()  # the load and the override above logged at INFO if an earlier test set that level
        rewrite(path, "confidence_threshold: [this is: not valid", bump_s=1)
        clock.now += 6
        kept = store.current("rho-bank")
        clock.now += 6
        store.current("rho-bank")  # the same bad file is reported once, not at every check

    assert kept.confidence_threshold == 0.7
    assert kept.archetypes[tk.ARCHETYPE_FAQ_BOUNDED].kill_switch is True  # overrides survive a reload attempt
    assert invalid._value.get() == before + 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == ["routing policy file is invalid; keeping the last good policy"]

    rewrite(path, POLICY_DOC | {"confidence_threshold": 0.8}, bump_s=2)
    clock.now += 6
    fixed = store.current("rho-bank")
    assert fixed.confidence_threshold == 0.8
    assert fixed.archetypes[tk.ARCHETYPE_FAQ_BOUNDED].kill_switch is True


def test_a_deleted_file_keeps_the_last_good_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_POLICY_PATH.read_text())
    clock = FakeClock()
    store = PolicyStore(path, check_interval_s=5, clock=clock)
    path.unlink()
    clock.now += 6
    assert store.current().confidence_threshold == 0.7


def test_an_invalid_file_at_start_up_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("archetypes: {}\n")
    with pytest.raises(PolicyError, match=str(path)):
        PolicyStore(path)


def test_a_tenant_with_its_own_file_follows_it_hot_reloaded_and_others_follow_the_deployments(tmp_path: Path) -> None:
    deployment, own = tmp_path / "policy.yaml", tmp_path / "acme-policy.yaml"
    deployment.write_text(DEFAULT_POLICY_PATH.read_text())
    own.write_text(yaml.safe_dump(POLICY_DOC | {"confidence_threshold": 0.8}))
    clock = FakeClock()
    store = PolicyStore(deployment, tenant_paths={"acme": own}, check_interval_s=5, clock=clock)
    store.apply_override(override(ev.OVERRIDE_ACTION_KILL_SWITCH_ON, tenant="*"))

    assert store.tenants == ["acme"] and store.path_for("acme") == own and store.path_for("rho-bank") == deployment
    assert (store.current("acme").confidence_threshold, store.current("rho-bank").confidence_threshold) == (0.8, 0.7)
    assert store.current("acme").archetypes[tk.ARCHETYPE_FAQ_BOUNDED].kill_switch  # an override for every tenant

    rewrite(own, POLICY_DOC | {"confidence_threshold": 0.9}, bump_s=1)
    clock.now += 6
    assert (store.current("acme").confidence_threshold, store.current("rho-bank").confidence_threshold) == (0.9, 0.7)
    assert store.current("acme").archetypes[tk.ARCHETYPE_FAQ_BOUNDED].kill_switch


def test_an_invalid_tenant_file_at_start_up_fails_loudly(tmp_path: Path) -> None:
    own = tmp_path / "acme-policy.yaml"
    own.write_text("archetypes: {}\n")
    with pytest.raises(PolicyError, match=str(own)):
        PolicyStore(DEFAULT_POLICY_PATH, tenant_paths={"acme": own})
