"""The escalator with evidence: the packet carries the investigation and counts it in its
completeness, the case type comes from the evidence, a tenant's opt-in answers a draft-for-review
ticket on settled evidence (and never under any exclusion), escalations without a draft are
investigated here, and a customer's "yes" on their channel confirms the pending proposal."""

from __future__ import annotations

import pytest

from integrations.crm import FileCrm
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta
from supportflow.topics import Topic
from tooling.sample_data import SAMPLE_CRM_PATH

from services.escalator.actions import ActionGate, ActionLedger, ExecutionResult
from services.escalator.case_routing import case_type_for
from services.escalator.config import ActionLimits, ConfigError, EscalationConfig, EvidenceRouting
from services.escalator.confirmations import ConfirmationLexicon, ConfirmationLexicons
from services.escalator.decision import decide_drafted, evidence_settles
from services.escalator.handlers import Escalator
from services.escalator.incidents import IncidentTracker
from services.escalator.packet import build_packet
from tests.unit.test_escalator_handlers import NOW, T0, classified, decisions, ticket

TENANT = "rho-bank"
HELD = ev.Finding(source="transactions", lookup="recent_transfers", record_id="TRF-1", available=True,
                  summary="The transfer of 120.00 GBP on 3 December is held for a new-payee check.",
                  facts={"amount": "120.00", "status": "held"}, supports=[ev.CASE_TYPE_EXPECTED_BEHAVIOUR])
ACCOUNT = ev.Finding(source="account", lookup="customer", record_id="cust-0099", available=True,
                     summary="Standard customer, account open, one active card.",
                     facts={"tier": "standard", "account_status": "open", "cards": "1"})
DECLINES = ev.Finding(source="product_events", lookup="declines", available=True,
                      summary="Two card payments were declined on 3 December (reason: insufficient funds).",
                      facts={"count": "2", "reason_code": "51"})
DOWN = ev.Finding(source="incidents", lookup="open_incidents", available=False, unavailable_reason="timed out")
SETTLED = ev.Investigation(playbook="transfer_pending", findings=[HELD, ACCOUNT], completeness=1.0,
                           case_type=ev.CASE_TYPE_EXPECTED_BEHAVIOUR)
RULE = EvidenceRouting(case_types=(ev.CASE_TYPE_EXPECTED_BEHAVIOUR,), min_evidence_completeness=1.0, max_evidence_age_s=600)
POLICY_ROUTE = "archetype account_specific: draft_for_review (policy file)"


def account_classification(**changes) -> tk.Classification:
    fields = dict(intent="pending_transfer", confidence=0.92, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC,
                  urgency=tk.URGENCY_NORMAL, tier=tk.CUSTOMER_TIER_STANDARD, route=tk.ROUTE_DRAFT_FOR_REVIEW,
                  route_reason=POLICY_ROUTE, segment="retail")
    return tk.Classification(**(fields | changes))


def evidence_draft(verified=True, stated=True) -> tk.Draft:
    ledger = [tk.PolicyClaim(claim="2 business days", kind="days", article_id="a1", verified=True)]
    if stated:
        ledger.append(tk.PolicyClaim(claim="amount 120.00", kind="evidence", article_id="TRF-1", verified=verified))
    return tk.Draft(text="Your transfer of 120.00 GBP is held. Held transfers are released within 2 business days.",
                    status=tk.DRAFT_STATUS_READY, ledger=ledger,
                    citations=[tk.Citation(article_id="a1", chunk_id="a1#0", passage="2 business days")])


def decide(classification=None, draft=None, investigation=SETTLED, age=30.0, rule=RULE, **extra):
    return decide_drafted(classification or account_classification(), tk.NormalizedTicket(), draft or evidence_draft(),
                          evidence_rule=rule, investigation=investigation, evidence_age_s=age, **extra)


# --- the packet ---------------------------------------------------------------------------------


def packet(investigation, account_state=None, body="My transfer is still pending", evidence=()):
    return build_packet(
        ticket=tk.Ticket(ticket_id="t-1", customer_id="cust-0099", body=body),
        normalized=tk.NormalizedTicket(), classification=account_classification(route=tk.ROUTE_ESCALATE),
        decision=ev.DECISION_ESCALATE, case_type=ev.CASE_TYPE_EXPECTED_BEHAVIOUR, target_queue="payments",
        account_state=account_state, evidence=evidence, investigation=investigation)


def test_the_packet_carries_the_findings_and_counts_them_in_its_completeness():
    without = packet(ev.Investigation())
    assert set(without.unknown_fields) == {"account_state", "steps_tried", "evidence"}
    assert without.completeness == pytest.approx(0.7) and not without.investigation

    partial = ev.Investigation(findings=[HELD, ACCOUNT, DECLINES, DOWN], completeness=0.75,
                               uncertain=["whether the incident feed shows an outage"])
    full = packet(partial)
    assert list(full.investigation) == [HELD, ACCOUNT, DECLINES, DOWN]  # the failed lookup is kept, with its reason
    assert full.investigation[3].unavailable_reason == "timed out"
    assert full.evidence_completeness == 0.75
    assert full.unknown_fields == [] and full.completeness == 1.0
    assert full.account_state["account_status"] == "open"  # from the account finding when the CRM has nothing
    assert "whether the incident feed shows an outage" in full.missing_information

    # Only what was found counts: an unavailable lookup fills nothing.
    assert set(packet(ev.Investigation(findings=[DOWN])).unknown_fields) == {"account_state", "steps_tried", "evidence"}
    # The CRM's record stays the account state when there is one.
    assert packet(partial, account_state={"plan": "metal"}).account_state == {"plan": "metal"}


# --- the case type --------------------------------------------------------------------------------


def test_the_case_type_comes_from_the_evidence_where_it_settled_one():
    config = EscalationConfig.load()
    classification = account_classification(intent="failed_transfer")  # product_defect by the static table
    normalized = tk.NormalizedTicket()
    assert case_type_for(classification, normalized, "", config) == ev.CASE_TYPE_PRODUCT_DEFECT
    assert case_type_for(classification, normalized, "", config, SETTLED) == ev.CASE_TYPE_EXPECTED_BEHAVIOUR
    unsettled = ev.Investigation(findings=[HELD], completeness=1.0)
    assert case_type_for(classification, normalized, "", config, unsettled) == ev.CASE_TYPE_PRODUCT_DEFECT
    # An incident and a policy-exception risk flag still come first.
    assert case_type_for(classification, normalized, "inc-1", config, SETTLED) == ev.CASE_TYPE_INCIDENT
    disputed = account_classification(risk_flags=[tk.RISK_FLAG_BILLING_DISPUTE])
    assert case_type_for(disputed, normalized, "", config, SETTLED) == ev.CASE_TYPE_POLICY_EXCEPTION


# --- answering on evidence -----------------------------------------------------------------------------


def test_settled_complete_verified_evidence_answers_a_draft_for_review_ticket():
    verdict = decide()
    assert verdict.decision == ev.DECISION_RESPOND and verdict.on_evidence
    assert "answered on evidence" in verdict.reason and "1 evidence fact(s) verified" in verdict.reason
    # Without the tenant's opt-in it stays with an agent, as before.
    assert decide(rule=None).decision == ev.DECISION_REVIEW
    assert decide(rule=None).reason == "agent review: route is draft-for-review"


@pytest.mark.parametrize("case, kwargs, why", [
    ("risk flag", dict(classification=account_classification(risk_flags=[tk.RISK_FLAG_CHURN])), "risk flags"),
    ("enterprise", dict(classification=account_classification(tier=tk.CUSTOMER_TIER_ENTERPRISE)), "enterprise customer"),
    ("low confidence", dict(classification=account_classification(confidence=0.55)), "low confidence"),
    ("injection", dict(classification=account_classification(input_flags=["prompt_injection"])), "prompt_injection"),
    ("truncated", dict(classification=account_classification(input_flags=["truncated"])), "input flags truncated"),
    ("guardrail override", dict(classification=account_classification(
        route_reason="archetype account_specific: draft_for_review (override o-1 by learner:guardrail: csat slip)")),
     "not the archetype's automation level"),
    ("stale evidence", dict(age=3600.0), "stale evidence"),
    ("no evidence time", dict(age=None), "no time for the evidence"),
    ("other case type", dict(investigation=ev.Investigation(
        findings=[HELD], completeness=1.0, case_type=ev.CASE_TYPE_PRODUCT_DEFECT)), "settles product_defect"),
    ("incomplete", dict(investigation=ev.Investigation(findings=[HELD, DOWN], completeness=0.5,
                                                       case_type=ev.CASE_TYPE_EXPECTED_BEHAVIOUR)), "completeness 0.50"),
    ("no findings", dict(investigation=ev.Investigation()), "no investigation findings"),
    ("unverified evidence", dict(draft=evidence_draft(verified=False)), "not verified"),
    ("no evidence stated", dict(draft=evidence_draft(stated=False)), "states no evidence"),
])
def test_each_exclusion_keeps_the_ticket_with_an_agent(case, kwargs, why):
    verdict = decide(**kwargs)
    assert verdict.decision in (ev.DECISION_REVIEW, ev.DECISION_ESCALATE), case
    assert why in verdict.reason, (case, verdict.reason)


def test_a_configuration_mistake_is_answered_only_where_the_tenant_opted_its_case_type_in():
    """A frozen card: the customer can put it right alone, once told what the records show."""
    frozen = ev.Investigation(playbook="cards", findings=[HELD, ACCOUNT], completeness=1.0,
                              case_type=ev.CASE_TYPE_CONFIGURATION_MISTAKE)
    held = decide(investigation=frozen)
    assert held.decision == ev.DECISION_REVIEW
    assert "settles configuration_mistake, not expected_behaviour" in held.reason
    both = EvidenceRouting(case_types=(ev.CASE_TYPE_EXPECTED_BEHAVIOUR, ev.CASE_TYPE_CONFIGURATION_MISTAKE),
                           min_evidence_completeness=1.0)
    answered = decide(investigation=frozen, rule=both)
    assert answered.decision == ev.DECISION_RESPOND and answered.on_evidence
    assert "settles configuration_mistake" in answered.reason
    # The opt-in widens nothing else: a defect still waits, and so does an auto-respond archetype's
    # draft stating such evidence where the tenant has no rule for that archetype.
    defect = ev.Investigation(findings=[HELD], completeness=1.0, case_type=ev.CASE_TYPE_PRODUCT_DEFECT)
    assert "not expected_behaviour or configuration_mistake" in decide(investigation=defect, rule=both).reason
    auto = account_classification(route=tk.ROUTE_AUTO_RESPOND, archetype=tk.ARCHETYPE_REPETITIVE)
    assert decide(classification=auto, investigation=frozen, rule=None).holds == ("evidence_unsettled",)
    assert decide(classification=auto, investigation=frozen, rule=both).decision == ev.DECISION_RESPOND


def test_settled_evidence_does_not_lift_the_other_automatic_reply_conditions():
    stale_article = evidence_draft()
    stale_article.citations[0].stale = True
    held = decide(draft=stale_article)
    assert held.decision == ev.DECISION_REVIEW and held.on_evidence and held.holds == ("stale_article",)
    assert decide(in_incident=True).holds == ("incident",)
    assert decide(writes_back=True).decision == ev.DECISION_REVIEW
    assert evidence_settles(RULE, account_classification(), evidence_draft(), SETTLED, 30.0, 0.7) == []


@pytest.mark.parametrize("case_type, why", [
    (ev.CASE_TYPE_UNSPECIFIED, "does not settle the case"),
    (ev.CASE_TYPE_PRODUCT_DEFECT, "settles product_defect"),
    (ev.CASE_TYPE_INCIDENT, "settles incident"),
])
def test_an_auto_respond_draft_stating_evidence_that_does_not_settle_the_case_waits_for_an_agent(case_type, why):
    """The auto-respond route (a card that has not arrived) with an investigation that found no card
    on record: the draft would tell the customer what their account shows without explaining it."""
    auto = account_classification(route=tk.ROUTE_AUTO_RESPOND, archetype=tk.ARCHETYPE_REPETITIVE)
    unsettled = ev.Investigation(playbook="cards", findings=[HELD], completeness=1.0, case_type=case_type)
    verdict = decide(classification=auto, investigation=unsettled, rule=None)
    assert verdict.decision == ev.DECISION_REVIEW
    assert verdict.holds == ("evidence_unsettled",) and why in verdict.reason
    assert decide(classification=auto, investigation=SETTLED, rule=None).decision == ev.DECISION_RESPOND
    # A draft that states no account evidence is not held for what the investigation found.
    plain = decide(classification=auto, draft=evidence_draft(stated=False), investigation=unsettled, rule=None)
    assert plain.decision == ev.DECISION_RESPOND


def test_the_opt_in_is_tenant_data_validated_on_load(tmp_path):
    shipped = EscalationConfig.load()
    assert shipped.evidence_rule("demo-bank", tk.ARCHETYPE_ACCOUNT_SPECIFIC) == EvidenceRouting(
        (ev.CASE_TYPE_EXPECTED_BEHAVIOUR, ev.CASE_TYPE_CONFIGURATION_MISTAKE), 1.0, 600.0)
    assert shipped.evidence_rule("rho-bank", tk.ARCHETYPE_ACCOUNT_SPECIFIC) is None
    assert shipped.evidence_rule("demo-bank", tk.ARCHETYPE_FAQ_BOUNDED) is None
    text = _shipped_text()
    for broken, message in (
        ("case_types: [expected_behavior]", "unknown case type"),
        ("case_types: []", "names no case type"),
        ("case_type: expected_behaviour", "unknown key(s) case_type"),
        ("min_evidence_completeness: 1.5", "must be in (0, 1]"),
        ("min_evidence_completeness: 1.0\n          when: always", "unknown key(s) when"),
    ):
        path = tmp_path / "escalation.yaml"
        original = ("case_types: [expected_behaviour, configuration_mistake]" if "case_type" in broken
                    else "min_evidence_completeness: 1.0")
        path.write_text(text.replace(original, broken, 1))
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            EscalationConfig.load(path)


def _shipped_text() -> str:
    from importlib import resources

    return resources.files("services.escalator").joinpath("escalation.yaml").read_text(encoding="utf-8")


# --- the handlers ---------------------------------------------------------------------------------


class RecordingInvestigate:
    def __init__(self, investigation: ev.Investigation) -> None:
        self.investigation = investigation
        self.requests: list[svc.InvestigateRequest] = []

    def __call__(self, request: svc.InvestigateRequest) -> ev.Investigation:
        self.requests.append(request)
        return self.investigation


def escalator(investigate=None, executor=None, dry_run=True, lexicons=None) -> Escalator:
    config = EscalationConfig.load()
    return Escalator(config, FileCrm(SAMPLE_CRM_PATH), IncidentTracker(config.incidents),
                     ActionGate(ActionLimits.load(), ActionLedger(), dry_run=dry_run, executor=executor),
                     investigate=investigate or RecordingInvestigate(ev.Investigation()),
                     lexicons=lexicons, clock=lambda: NOW)


def test_an_escalation_without_a_draft_is_investigated_here_and_carries_the_findings():
    investigate = RecordingInvestigate(SETTLED)
    event = classified(ticket(body="My transfer is stuck"), tk.ROUTE_ESCALATE, intent="failed_transfer",
                       archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC)
    [emit] = decisions(escalator(investigate).on_classified(event))
    decided = emit.event
    assert [r.ticket.ticket_id for r in investigate.requests] == [event.ticket.ticket_id]
    assert decided.investigation == SETTLED
    assert list(decided.packet.investigation) == [HELD, ACCOUNT] and decided.packet.evidence_completeness == 1.0
    assert decided.case_type == ev.CASE_TYPE_EXPECTED_BEHAVIOUR  # the table says product_defect
    # A follow-up hands nothing to a person yet: nobody is asked.
    follow_up = RecordingInvestigate(SETTLED)
    escalator(follow_up).on_classified(classified(ticket(), tk.ROUTE_ASK_FOLLOW_UP, missing=["transaction_id"]))
    assert follow_up.requests == []


def drafted_event(c: ev.TicketClassified, investigation: ev.Investigation) -> ev.TicketDrafted:
    event = ev.TicketDrafted(meta=new_meta("demo-bank", "drafter"), ticket=c.ticket, normalized=c.normalized,
                             classification=c.classification, draft=evidence_draft(), timeline=c.timeline,
                             investigation=investigation)
    event.timeline.evidence_at.seconds = T0 + 2
    return event


def test_a_drafted_ticket_uses_the_drafters_investigation_and_the_tenants_opt_in():
    t = ticket(body="Where is my transfer?")
    t.tenant_id = "demo-bank"
    c = classified(t, tk.ROUTE_DRAFT_FOR_REVIEW, intent="pending_transfer", archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC)
    c.classification.route_reason = POLICY_ROUTE
    investigate = RecordingInvestigate(ev.Investigation())
    [emit] = decisions(escalator(investigate).on_drafted(drafted_event(c, SETTLED)))
    assert emit.topic is Topic.TICKETS_RESPONDED and "answered on evidence" in emit.event.reason
    assert emit.event.investigation == SETTLED and investigate.requests == []
    # The same ticket for a tenant that did not opt in goes to an agent with the packet.
    c.ticket.tenant_id = TENANT
    [review] = decisions(escalator(investigate).on_drafted(drafted_event(c, SETTLED)))
    assert review.topic is Topic.TICKETS_REVIEW and list(review.event.packet.investigation) == [HELD, ACCOUNT]


# --- confirmation in the customer's own words ---------------------------------------------------------


def reply(ticket_id: str, text: str, source="zendesk") -> ev.FeedbackReceived:
    return ev.FeedbackReceived(meta=new_meta(TENANT, "gateway"), ticket_id=ticket_id, source=source,
                               customer_reply=ev.CustomerReply(text=text))


def proposal_for(service: Escalator, intent="lost_or_stolen_card") -> tuple[str, ev.ActionRecorded]:
    event = classified(ticket(), tk.ROUTE_ESCALATE, intent=intent, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC)
    [proposed] = [e.event for e in service.on_classified(event) if e.topic is Topic.ACTIONS_RECORDED]
    assert proposed.status == ev.ACTION_STATUS_PROPOSED
    return event.ticket.ticket_id, proposed


@pytest.mark.parametrize("text, confirms", [
    ("Yes please", True), ("yes, go ahead.", True), ("OK do it", True), ("Confirmed!", True),
    ("No, don't", False), ("yes but not the other card", False), ("Why is my card frozen?", False),
    ("Yes. " + "I also want to ask about my statement and the fees on it from last month please", False),
    ("yes?", False),
])
def test_the_default_lexicon_reads_a_short_yes(text, confirms):
    assert ConfirmationLexicons(None).for_tenant(TENANT).confirms(text) is confirms


def test_a_customers_yes_on_their_channel_confirms_and_runs_the_proposal():
    ran = []

    def system(request, action_id):
        ran.append((request.tool, action_id))
        return ExecutionResult(True, status="frozen", reference="chg-1", result={"last4": "1234"})

    service = escalator(executor=system, dry_run=False)
    ticket_id, proposed = proposal_for(service)
    assert service.on_feedback(reply(ticket_id, "What happens next?")) == []  # not a yes
    [emit] = service.on_feedback(reply(ticket_id, "Yes please, freeze it"))
    record = emit.event
    assert emit.topic is Topic.ACTIONS_RECORDED and record.status == ev.ACTION_STATUS_EXECUTED
    assert record.proposal_id == proposed.action_id and record.confirmed_by == "customer:zendesk"
    assert record.confirmation_ref.startswith("reply:")
    assert dict(record.params)["status"] == "frozen" and dict(record.params)["result.last4"] == "1234"
    assert ran == [("card_freeze", record.action_id)]
    # The proposal is taken: a second yes (or the same reply redelivered) runs nothing.
    assert service.on_feedback(reply(ticket_id, "yes")) == [] and len(ran) == 1


def test_a_yes_with_two_proposals_open_or_from_another_ticket_confirms_nothing():
    service = escalator()
    ticket_id, _ = proposal_for(service)
    assert service.on_feedback(reply("t-other", "yes")) == []
    second = classified(ticket(ticket_id=ticket_id), tk.ROUTE_ESCALATE, intent="passcode_forgotten",
                        archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC)
    service.on_classified(second)
    assert service.on_feedback(reply(ticket_id, "yes")) == []
    # Other feedback is the learner's.
    assert service.on_feedback(ev.FeedbackReceived(meta=new_meta(TENANT, "x"), ticket_id=ticket_id, misroute=True)) == []


def test_a_tenants_affirmative_words_replace_the_default(tmp_path):
    folder = tmp_path / TENANT / "lexicons"
    folder.mkdir(parents=True)
    (folder / "affirmative-words.yaml").write_text('words: ["vale"]\nphrases: ["adelante"]\nnegations: ["pero"]\n')
    lexicon = ConfirmationLexicons(tmp_path).for_tenant(TENANT)
    assert lexicon.confirms("vale") and lexicon.confirms("sí, adelante") and not lexicon.confirms("vale pero no")
    assert not lexicon.confirms("yes")  # replaced, not extended
    assert lexicon.max_words == ConfirmationLexicons(None).for_tenant(TENANT).max_words  # from the default
    assert ConfirmationLexicons(tmp_path).for_tenant("other").confirms("yes")
    (folder / "affirmative-words.yaml").write_text("words: [yes]\n")
    with pytest.raises(ConfigError, match="quoted"):
        ConfirmationLexicons(tmp_path).for_tenant(TENANT)
    assert isinstance(ConfirmationLexicons(None).for_tenant("../etc"), ConfirmationLexicon)


def test_the_retail_tenants_own_words_are_read():
    from pathlib import Path

    lexicon = ConfirmationLexicons(Path(__file__).resolve().parents[2] / "tenants").for_tenant("retail")
    assert lexicon.confirms("yep, do it") and not lexicon.confirms("yes?") and not lexicon.confirms("not yet")


def test_an_intent_that_is_a_policy_exception_is_not_answered_on_evidence_that_the_charge_was_right():
    t = ticket(body="There is an extra charge on my statement I want back")
    t.tenant_id = "demo-bank"
    c = classified(t, tk.ROUTE_DRAFT_FOR_REVIEW, intent="extra_charge_on_statement", archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC)
    c.classification.route_reason = POLICY_ROUTE
    [emit] = decisions(escalator().on_drafted(drafted_event(c, SETTLED)))
    assert emit.topic is Topic.TICKETS_REVIEW and "policy exception" in emit.event.reason
    assert emit.event.case_type == ev.CASE_TYPE_EXPECTED_BEHAVIOUR  # what the records show, for the agent


def test_a_proposal_takes_its_parameters_from_the_findings_never_from_the_ticket():
    card = ev.Finding(source="account", lookup="card", record_id="card-77", available=True,
                      summary="The physical card ending 1234 is active.", facts={"last4": "1234"})
    service = escalator(RecordingInvestigate(ev.Investigation(findings=[card], completeness=1.0)))
    event = classified(ticket(body="I lost my card ending 9999, freeze card-00 now"), tk.ROUTE_ESCALATE,
                       intent="lost_or_stolen_card", archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC)
    [proposed] = [e.event for e in service.on_classified(event) if e.topic is Topic.ACTIONS_RECORDED]
    assert (proposed.tool, dict(proposed.params)) == ("card_freeze", {"card_id": "card-77"})
    # Two cards found: the evidence does not say which, so the system decides (its only open card).
    two = escalator(RecordingInvestigate(ev.Investigation(findings=[card, card])))
    [unsure] = [e.event for e in two.on_classified(classified(ticket(), tk.ROUTE_ESCALATE, intent="lost_or_stolen_card",
                                                              archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC))
                if e.topic is Topic.ACTIONS_RECORDED]
    assert dict(unsure.params) == {}
