"""Decision rules of the escalator, one rule per test, plus the exclusivity of the two paths."""

from __future__ import annotations

import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.escalator.decision import HOLDS, decide_classified, decide_drafted, writes_back_after_an_answer


def classification(route=tk.ROUTE_AUTO_RESPOND, confidence=0.9, archetype=tk.ARCHETYPE_FAQ_BOUNDED, flags=(), input_flags=()):
    return tk.Classification(
        intent="card_arrival", confidence=confidence, archetype=archetype, route=route,
        risk_flags=list(flags), input_flags=list(input_flags), route_reason="policy says so",
    )


def ready_draft(**changes):
    draft = tk.Draft(
        text="Your card arrives within 5 working days.", status=tk.DRAFT_STATUS_READY,
        ledger=[tk.PolicyClaim(claim="5 working days", kind="days", verified=True)],
    )
    for name, value in changes.items():
        if isinstance(value, list):  # repeated fields: ledger, citations
            del getattr(draft, name)[:]
            getattr(draft, name).extend(value)
        else:
            setattr(draft, name, value)
    return draft


NORMAL = tk.NormalizedTicket()


FRESH = tk.Citation(article_id="a1", title="Ordering a card")


def test_ready_auto_respond_draft_is_sent():
    verdict = decide_drafted(classification(), NORMAL, ready_draft(citations=[FRESH]))
    assert verdict.decision == ev.DECISION_RESPOND
    assert "verified" in verdict.reason


def test_confidence_exactly_at_threshold_is_sent_and_just_below_is_reviewed():
    assert decide_drafted(classification(confidence=0.7), NORMAL, ready_draft()).decision == ev.DECISION_RESPOND
    below = decide_drafted(classification(confidence=0.69), NORMAL, ready_draft())
    assert below.decision == ev.DECISION_REVIEW
    assert "confidence 0.69 < 0.70" in below.reason


@pytest.mark.parametrize(
    "cls, draft, expected_in_reason, hold",
    [
        (classification(route=tk.ROUTE_DRAFT_FOR_REVIEW), ready_draft(), "route is draft-for-review", None),
        (
            classification(), ready_draft(ledger=[tk.PolicyClaim(claim="30 days", verified=False)]),
            "1 policy claim(s) not verified", "unverified_claims",
        ),
        (classification(flags=[tk.RISK_FLAG_CHURN]), ready_draft(), "risk flags churn", "risk_flags"),
        (classification(), ready_draft(text="  "), "draft is empty", "empty"),
        (
            classification(), ready_draft(status=tk.DRAFT_STATUS_UNSPECIFIED),
            "draft status is DRAFT_STATUS_UNSPECIFIED", "not_ready",
        ),
        (
            classification(),
            ready_draft(citations=[FRESH, tk.Citation(article_id="a2", title="Card delivery times", stale=True)]),
            "cites 1 article(s) past their review date: Card delivery times", "stale_article",
        ),
        (
            classification(),
            ready_draft(generator="claude:m", answerability=tk.ANSWERABILITY_NOT_ANSWERED),
            "claude:m judged that the passages do not answer the question", "not_answered",
        ),
    ],
)
def test_each_blocker_turns_a_reply_into_a_review(cls, draft, expected_in_reason, hold):
    verdict = decide_drafted(cls, NORMAL, draft)
    assert verdict.decision == ev.DECISION_REVIEW
    assert expected_in_reason in verdict.reason
    # Holds count what stopped an automatic reply; a draft-for-review route never was one.
    assert verdict.holds == ((hold,) if hold else ())
    assert set(verdict.holds) <= set(HOLDS)


def test_review_reason_lists_every_blocker():
    verdict = decide_drafted(
        classification(route=tk.ROUTE_DRAFT_FOR_REVIEW, confidence=0.4), NORMAL, ready_draft(), in_incident=True
    )
    assert verdict.reason == (
        "agent review: route is draft-for-review; confidence 0.40 < 0.70; the ticket is part of an open incident"
    )


def test_open_incident_stops_automatic_replies():
    verdict = decide_drafted(classification(), NORMAL, ready_draft(), in_incident=True)
    assert verdict.decision == ev.DECISION_REVIEW
    assert verdict.holds == ("incident",)


def test_the_drafters_reason_for_judging_a_draft_off_the_question_reaches_the_agent():
    draft = ready_draft(answerability=tk.ANSWERABILITY_NOT_ANSWERED, generator="offline",
                        answerability_reason="the question is about incoming money; the quoted passages are about outgoing")
    verdict = decide_drafted(classification(), NORMAL, draft)
    assert verdict.holds == ("not_answered",)
    assert verdict.reason.endswith(
        "offline judged that the passages do not answer the question "
        "(the question is about incoming money; the quoted passages are about outgoing)"
    )


@pytest.mark.parametrize("author, writes_back", [("bot", True), ("agent", True), ("customer", False), ("", False)])
def test_a_customer_writing_back_after_an_answer_is_never_answered_automatically(author, writes_back):
    ticket = tk.Ticket(history=[tk.ConversationTurn(author="customer", text="Where is my card?"),
                                tk.ConversationTurn(author=author, text="Cards arrive within 5 working days.")])
    assert writes_back_after_an_answer(ticket) is writes_back
    verdict = decide_drafted(classification(), NORMAL, ready_draft(), writes_back=writes_back)
    assert verdict.holds == (("writes_back",) if writes_back else ())


def test_a_policy_exception_is_never_answered_automatically():
    verdict = decide_drafted(classification(), NORMAL, ready_draft(), policy_exception=True)
    assert verdict.decision == ev.DECISION_REVIEW
    assert verdict.holds == ("policy_exception",)
    assert "policy exception case (card_arrival)" in verdict.reason


@pytest.mark.parametrize(
    "flag", [tk.RISK_FLAG_SECURITY, tk.RISK_FLAG_LEGAL, tk.RISK_FLAG_BILLING_DISPUTE, tk.RISK_FLAG_PROMPT_INJECTION]
)
def test_escalation_risk_flags_escalate_even_a_perfect_draft(flag):
    verdict = decide_drafted(classification(flags=[flag]), NORMAL, ready_draft())
    assert verdict.decision == ev.DECISION_ESCALATE
    assert tk.RiskFlag.Name(flag).removeprefix("RISK_FLAG_").lower() in verdict.reason


def test_prompt_injection_input_flag_alone_escalates():
    verdict = decide_drafted(classification(input_flags=["prompt_injection"]), NORMAL, ready_draft())
    assert verdict.decision == ev.DECISION_ESCALATE
    assert "prompt_injection" in verdict.reason


def test_blocked_draft_escalates_with_its_reason():
    verdict = decide_drafted(
        classification(), NORMAL, ready_draft(status=tk.DRAFT_STATUS_BLOCKED, block_reason="unverified refund window")
    )
    assert verdict.decision == ev.DECISION_ESCALATE
    assert verdict.reason == "draft blocked: unverified refund window"


def test_no_evidence_escalates_account_specific_and_reviews_the_rest():
    no_evidence = ready_draft(status=tk.DRAFT_STATUS_NO_EVIDENCE)
    account = decide_drafted(classification(archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC), NORMAL, no_evidence)
    faq = decide_drafted(classification(archetype=tk.ARCHETYPE_FAQ_BOUNDED), NORMAL, no_evidence)
    assert account.decision == ev.DECISION_ESCALATE
    assert faq.decision == ev.DECISION_REVIEW


def test_missing_identifiers_ask_a_follow_up():
    normalized = tk.NormalizedTicket(missing_identifiers=["transaction_id", "amount"])
    verdict = decide_drafted(classification(), normalized, ready_draft(status=tk.DRAFT_STATUS_NO_EVIDENCE))
    assert verdict.decision == ev.DECISION_FOLLOW_UP
    assert verdict.reason == "ask the customer for transaction_id, amount"


def test_classified_path_decides_escalate_and_follow_up_routes_only():
    assert decide_classified(classification(route=tk.ROUTE_AUTO_RESPOND), NORMAL) is None
    assert decide_classified(classification(route=tk.ROUTE_DRAFT_FOR_REVIEW), NORMAL) is None
    escalate = decide_classified(classification(route=tk.ROUTE_ESCALATE), NORMAL)
    assert escalate.decision == ev.DECISION_ESCALATE
    assert escalate.reason == "classifier routed to a human: policy says so"
    follow_up = decide_classified(
        classification(route=tk.ROUTE_ASK_FOLLOW_UP), tk.NormalizedTicket(missing_identifiers=["card_last4"])
    )
    assert follow_up.decision == ev.DECISION_FOLLOW_UP
    assert follow_up.reason == "ask the customer for card_last4"


def test_follow_up_route_with_a_security_flag_escalates():
    verdict = decide_classified(classification(route=tk.ROUTE_ASK_FOLLOW_UP, flags=[tk.RISK_FLAG_SECURITY]), NORMAL)
    assert verdict.decision == ev.DECISION_ESCALATE


def test_missing_route_goes_to_a_human():
    verdict = decide_classified(classification(route=tk.ROUTE_UNSPECIFIED), NORMAL)
    assert verdict.decision == ev.DECISION_ESCALATE


@pytest.mark.parametrize("route", list(tk.Route.values()))
@pytest.mark.parametrize("status", list(tk.DraftStatus.values()))
def test_exactly_one_path_decides_every_route(route, status):
    cls = classification(route=route)
    by_classified = decide_classified(cls, NORMAL)
    by_drafted = decide_drafted(cls, NORMAL, ready_draft(status=status))
    assert (by_classified is None) != (by_drafted is None)
