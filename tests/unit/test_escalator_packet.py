"""Context packets: summaries, steps tried, evidence order, completeness and unknown fields."""

from __future__ import annotations

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from conversation.summary import MAX_SUMMARY_CHARS, conversation_summary
from integrations.crm import FileCrm, account_fields
from services.escalator.packet import REQUIRED_FIELDS, build_packet, steps_already_tried
from tooling.sample_data import SAMPLE_CRM_PATH

EMAIL = (
    "Hi team,\n\nMy card stopped working at every shop since Monday. I already restarted the app and "
    "I have reinstalled it too. Nothing changed.\n\nThanks,\nGrace\n\nSent from my phone"
)


def ticket(body=EMAIL, subject="Card declined everywhere since Monday", customer_id="cust-0001", history=()):
    return tk.Ticket(ticket_id="t-1", tenant_id="rho-bank", customer_id=customer_id, subject=subject, body=body,
                     history=list(history))


def classification():
    return tk.Classification(
        intent="card_not_working", archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC, urgency=tk.URGENCY_HIGH,
        tier=tk.CUSTOMER_TIER_PREMIUM, frustration_signals=["since Monday"], route=tk.ROUTE_DRAFT_FOR_REVIEW,
    )


def draft():
    return tk.Draft(
        text="...", status=tk.DRAFT_STATUS_READY, next_step="Check the card status in the admin console.",
        citations=[tk.Citation(article_id="a2", chunk_id="a2#0", title="Card declined", passage="If a card is declined")],
        uncertainties=["whether the card is frozen"],
    )


EVIDENCE = [
    tk.EvidencePassage(article_id="a1", chunk_id="a1#0", title="Card basics", text="..."),
    tk.EvidencePassage(article_id="a2", chunk_id="a2#0", title="Card declined", text="If a card is declined..."),
]


def packet(**overrides):
    args = dict(
        ticket=ticket(), normalized=tk.NormalizedTicket(steps_tried=["Tried another shop"]),
        classification=classification(), decision=ev.DECISION_REVIEW, case_type=ev.CASE_TYPE_PRODUCT_DEFECT,
        target_queue="cards", account_state=account_fields(FileCrm(SAMPLE_CRM_PATH), "cust-0001"),
        draft=draft(), evidence=EVIDENCE,
    )
    args.update(overrides)
    return build_packet(**args)


def test_summary_drops_greeting_and_signature_and_keeps_the_subject():
    summary = conversation_summary(ticket())
    assert summary == (
        "Subject: Card declined everywhere since Monday. My card stopped working at every shop since Monday. "
        "I already restarted the app and I have reinstalled it too. Nothing changed."
    )


def test_summary_adds_the_latest_earlier_customer_turn():
    history = [tk.ConversationTurn(author="customer", text="Hello. My card was declined at Tesco."),
               tk.ConversationTurn(author="agent", text="Could you try again?")]
    summary = conversation_summary(ticket(body="Still declined.", subject="", history=history))
    assert summary == "Still declined. Earlier the customer wrote: My card was declined at Tesco."


def test_summary_of_an_oversized_ticket_is_bounded_and_not_repetitive():
    summary = conversation_summary(ticket(body="My transfer failed. " * 5000, subject=""))
    assert summary == "My transfer failed."
    assert len(conversation_summary(ticket(body=("word " * 300 + ". ") * 3, subject=""))) <= MAX_SUMMARY_CHARS + 1


def test_steps_tried_come_from_the_classifier_and_the_customer_words():
    steps = steps_already_tried(ticket(), tk.NormalizedTicket(steps_tried=["Tried another shop"]))
    assert steps == ["Tried another shop", "I already restarted the app and I have reinstalled it too."]


def test_steps_tried_is_empty_when_nothing_was_said():
    assert steps_already_tried(ticket(body="Where is my card?"), tk.NormalizedTicket()) == []


def test_complete_packet_scores_one_and_lists_no_unknown_fields():
    built = packet()
    assert built.completeness == 1.0
    assert list(built.unknown_fields) == []
    assert built.account_state["plan"] == "standard"
    assert built.suggested_next_step == "Check the card status in the admin console."
    assert list(built.missing_information) == ["whether the card is frozen"]
    assert list(built.frustration_signals) == ["since Monday"]


def test_cited_passages_come_first():
    assert [p.article_id for p in packet().articles] == ["a2", "a1"]


def test_citation_without_a_passage_still_reaches_the_agent():
    built = packet(evidence=[])
    assert [(p.article_id, p.text) for p in built.articles] == [("a2", "If a card is declined")]


def test_unknown_customer_is_marked_unknown_and_lowers_completeness():
    built = packet(ticket=ticket(customer_id="cust-9999"), account_state=None)
    assert dict(built.account_state) == {"status": "unknown", "customer_id": "cust-9999"}
    assert list(built.unknown_fields) == ["account_state"]
    assert built.completeness == 0.9


def test_an_escalation_without_draft_lists_everything_it_could_not_fill():
    built = packet(
        ticket=ticket(body="Help", subject="", customer_id=""), normalized=tk.NormalizedTicket(),
        classification=tk.Classification(intent="card_not_working", route=tk.ROUTE_ESCALATE),
        decision=ev.DECISION_ESCALATE, account_state=None, draft=None, evidence=[],
    )
    assert list(built.unknown_fields) == ["archetype", "urgency", "tier", "account_state", "steps_tried", "evidence"]
    assert built.completeness == (len(REQUIRED_FIELDS) - 6) / len(REQUIRED_FIELDS)
    assert built.suggested_next_step  # always a next step, even from nothing


def test_security_flag_leads_the_next_step_and_proposals_are_mentioned():
    cls = classification()
    cls.risk_flags.append(tk.RISK_FLAG_SECURITY)
    built = packet(classification=cls, decision=ev.DECISION_ESCALATE, proposed_tools=["password_reset"])
    assert built.suggested_next_step.startswith("Verify the customer's identity")
    assert built.suggested_next_step.endswith(
        "Proposed action(s) awaiting the customer's confirmation: password_reset.")
    assert list(built.risk_flags) == [tk.RISK_FLAG_SECURITY]


def test_account_fields_carry_tier_and_segment_and_unknown_customers_have_none(tmp_path):
    export = tmp_path / "crm.json"
    export.write_text('{"c1": {"tier": "premium", "segment": "uk", "account_state": {"plan": "metal"}}}')
    crm = FileCrm(export)
    assert account_fields(crm, "c1") == {"plan": "metal", "tier": "premium", "segment": "uk"}
    assert account_fields(crm, "c2") is None and account_fields(crm, "") is None
