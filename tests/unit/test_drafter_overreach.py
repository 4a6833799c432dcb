"""The overreach guard: no draft says an action happened (or will) unless it was executed."""

from __future__ import annotations

import pytest

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.drafter.overreach import ACTION_KINDS, PROPOSALS, action_claim, guard_overreach
from services.drafter.reply import ReplyParts, Sentence


@pytest.mark.parametrize(
    "text, kind",
    [
        ("Refund issued: your refund has been processed.", "refund"),
        ("I have issued a refund of $20 to your card.", "refund"),
        ("Your refund is on its way.", "refund"),
        ("I've cancelled the transfer for you.", "cancellation"),
        ("Your plan has been changed to Premium.", "plan_change"),
        ("We've reset your password.", "password_reset"),
        ("I have frozen your card.", "card_block"),
        ("A new card has been ordered.", "card_replacement"),
        ("I'll refund you the fee today.", "refund"),
        ("We will cancel your card right away.", "cancellation"),
        ("I have escalated this to our fraud team.", "escalation"),
        ("Your address has been updated.", "account_change"),
    ],
)
def test_action_claims_are_recognised(text: str, kind: str) -> None:
    assert action_claim(text) == kind
    assert kind in ACTION_KINDS and set(PROPOSALS) <= set(ACTION_KINDS)


@pytest.mark.parametrize(
    "text",
    [
        "Once your refund has been processed, it shows within 5 business days.",
        "If your card was blocked, you can unblock it in the app.",
        "Your refund has not been processed yet.",
        "We will refund up to $10 in out-of-network ATM fees each month.",  # policy, not a promise to you
        "You can cancel eligible payments within 17 minutes of submission.",
        "I can request a refund for you once you confirm.",
        "Refunds are usually processed within 5 business days.",
    ],
)
def test_descriptions_of_process_are_not_claims(text: str) -> None:
    assert action_claim(text) is None


def parts(*texts: str, **extra: object) -> ReplyParts:
    return ReplyParts(status=tk.DRAFT_STATUS_READY, generator="test", answer=tuple(Sentence(t, (0,)) for t in texts), **extra)


def test_claims_become_proposals_once_and_facts_stay() -> None:
    outcome = guard_overreach(
        parts(
            "Your refund has been issued.",
            "Refunds show on your statement within 5 business days.",
            "I have refunded the $2.50 fee as well.",
        )
    )
    assert [s.text for s in outcome.parts.answer] == [
        "I can request a refund for you once you confirm.",
        "Refunds show on your statement within 5 business days.",
    ]
    assert outcome.parts.answer[0].proposal and outcome.parts.answer[0].sources == ()
    assert [(f.action, f.replacement != "") for f in outcome.findings] == [("refund", True), ("refund", False)]


def test_an_executed_action_may_be_stated() -> None:
    outcome = guard_overreach(parts("Your refund has been issued."), frozenset({"refund"}))
    assert [s.text for s in outcome.parts.answer] == ["Your refund has been issued."]
    assert outcome.findings == ()


def test_claims_without_a_tool_are_removed_and_other_parts_are_guarded() -> None:
    outcome = guard_overreach(parts("Done: the payment was sent.", next_step="I have escalated your case."))
    assert outcome.parts.answer == ()
    assert outcome.parts.next_step == "I can pass this to a specialist if you would like."
    assert {f.action for f in outcome.findings} == {"transfer", "escalation"}
