"""The demo's simulated helpdesk: feedback the gateway accepts, drawn reproducibly, and the
unbacked resolutions the learner's knowledge loop turns into KB proposals."""

from __future__ import annotations

from collections import Counter

from services.gateway.intake import feedback_from_payload
from services.learner.knowledge import proposal
from tooling.demo_outcomes import format_outcomes, simulated_feedback, unbacked_resolutions


def record(ticket_id: str, decision: str, intent: str, *, cited: tuple[str, ...] = ()) -> dict:
    return {
        "id": ticket_id, "decision": decision, "intent": intent,
        "draft": "Hi! ..." if cited else "",
        "citations": [{"article_id": article_id, "title": article_id} for article_id in cited],
    }


RECORDS = [
    record("t0", "respond", "card_arrival", cited=("kb-1",)),
    record("t1", "review", "card_arrival", cited=("kb-1", "kb-2", "kb-1")),
    record("t2", "escalate", "card_arrival"),
    record("t3", "follow_up", "pending_top_up"),
    record("t4", "review", "pending_top_up"),  # no evidence: no draft, so no verdict
] + [record(f"r{i}", "review", "exchange_rate", cited=("kb-9",)) for i in range(30)]
NOTES = {"card_arrival": "Re-issued the card.", "pending_top_up": "Matched the transfer by hand."}


def by_ticket(payloads: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for payload in payloads:
        grouped.setdefault(payload["ticket_id"], []).append(payload)
    return grouped


def test_every_payload_is_feedback_the_gateway_accepts():
    payloads = simulated_feedback(RECORDS, NOTES)
    for payload in payloads:
        ticket_id, fields = feedback_from_payload(payload)
        assert ticket_id == payload["ticket_id"] and fields


def test_each_ticket_gets_a_csat_then_its_resolution_last_and_the_draw_is_reproducible():
    payloads = simulated_feedback(RECORDS, NOTES)
    assert payloads == simulated_feedback(RECORDS, NOTES)
    assert payloads != simulated_feedback(RECORDS, NOTES, seed=8)
    grouped = by_ticket(payloads)
    assert list(grouped) == [r["id"] for r in RECORDS]
    for ticket_id, items in grouped.items():
        kinds = [item["kind"] for item in items]
        assert kinds[-2:] == ["csat", "resolution"], ticket_id
        assert kinds[:-2] in ([], ["draft_verdict"]), ticket_id


def test_only_review_drafts_get_a_verdict_and_a_kept_draft_cites_its_articles():
    grouped = by_ticket(simulated_feedback(RECORDS, NOTES))
    with_verdict = {ticket_id for ticket_id, items in grouped.items() if items[0]["kind"] == "draft_verdict"}
    assert with_verdict == {"t1"} | {f"r{i}" for i in range(30)}
    verdicts = Counter(grouped[t][0]["verdict"] for t in with_verdict)
    assert set(verdicts) == {"accepted", "edited", "rejected"}  # 31 draws reach all three
    for ticket_id in with_verdict:
        verdict, resolution = grouped[ticket_id][0], grouped[ticket_id][-1]
        expected = [] if verdict["verdict"] == "rejected" else (["kb-1", "kb-2"] if ticket_id == "t1" else ["kb-9"])
        assert resolution["cited_article_ids"] == expected, ticket_id
        assert (verdict["edit_ratio"] > 0) == (verdict["verdict"] == "edited")


def test_the_bot_resolves_respond_tickets_and_agents_write_their_intents_notes():
    grouped = by_ticket(simulated_feedback(RECORDS, NOTES))
    bot = grouped["t0"][-1]
    assert bot["resolved_by_bot"] and bot["handle_time_s"] == 0 and bot["resolution_notes"] == ""
    for ticket_id, notes in (("t2", NOTES["card_arrival"]), ("t3", NOTES["pending_top_up"]), ("r0", "")):
        resolution = grouped[ticket_id][-1]
        assert not resolution["resolved_by_bot"] and resolution["handle_time_s"] >= 180
        assert resolution["resolution_notes"] == notes


def test_unbacked_resolutions_are_those_with_notes_that_cite_nothing():
    payloads = simulated_feedback(RECORDS, NOTES)
    grouped = unbacked_resolutions(RECORDS, payloads)
    t1_cites = by_ticket(payloads)["t1"][-1]["cited_article_ids"]
    assert grouped["pending_top_up"] == ["t3", "t4"]
    assert grouped["card_arrival"] == (["t1", "t2"] if not t1_cites else ["t2"])
    assert "exchange_rate" not in grouped  # no notes for that intent


def test_the_summary_counts_the_feedback_and_quotes_the_first_proposals():
    payloads = simulated_feedback(RECORDS, NOTES)
    tickets = {"t2": ("Card not here after two weeks", NOTES["card_arrival"]),
               "t5": ("Where is my new card?", NOTES["card_arrival"])}
    proposals = [proposal("rho-bank", intent, tickets) for intent in ("card_arrival", "a", "b", "c", "d")]
    text = format_outcomes(payloads, proposals, min_tickets=2)
    assert f"{len(payloads)} feedback events" in text and "csat 35, resolution 35" in text
    assert "proposed (a topic whose answers the KB did not back 2 times): 5" in text
    assert '[card_arrival] "Card arrival" from 2 tickets' in text
    assert "asked: Card not here after two weeks" in text and "resolved: Re-issued the card." in text
    assert "... and 2 more on topics c, d" in text
    assert format_outcomes(payloads, [], min_tickets=3).rstrip().endswith("did not back 3 times): 0")
