"""The demo's simulated customers and agents (tooling/demo_outcomes.py): customers act through their
channels (what they do, on each helpdesk's own scale, is what the gateway's adapters read), agents'
feedback is what the gateway accepts, and the summary says what was done per channel."""

from __future__ import annotations

from collections import Counter

from services.gateway.channels import freshdesk, intercom
from services.gateway.intake import feedback_from_payload
from services.learner.knowledge import proposal
from tooling.demo_outcomes import (
    RATINGS, REPETITIONS, SOLVED_STATUS, act_on_channels, as_json, csat_given, format_outcomes, simulated_agent_feedback,
    simulated_customers, unbacked_resolutions,
)

CHANNELS = ("zendesk", "intercom", "freshdesk", "email", "api")


def record(ticket_id: str, decision: str, intent: str, *, cited: tuple[str, ...] = (), channel: str = "zendesk") -> dict:
    return {
        "id": ticket_id, "ticket_id": f"p-{ticket_id}", "decision": decision, "intent": intent,
        "channel_in": channel, "external_id": f"x-{ticket_id}", "customer_email": f"{ticket_id}@customers.example",
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
CUSTOMERS = [record(f"c{i}", "respond", "card_arrival", channel=CHANNELS[i % 5]) for i in range(400)]


def by_ticket(payloads: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for payload in payloads:
        grouped.setdefault(payload["ticket_id"], []).append(payload)
    return grouped


# --- the customers --------------------------------------------------------------------------------


def test_customers_act_reproducibly_and_only_through_a_channel_they_have():
    actions = simulated_customers(CUSTOMERS)
    assert [a.fields for a in actions] == [a.fields for a in simulated_customers(CUSTOMERS)]
    assert [a.fields for a in actions] != [a.fields for a in simulated_customers(CUSTOMERS, seed=8)]
    assert {a.channel for a in actions} == {"zendesk", "intercom", "freshdesk", "email"}  # an API ticket has none
    assert all(a.ticket_id.startswith("p-") and a.external_id.startswith("x-") for a in actions)
    mail = [a for a in actions if a.channel == "email"]
    assert mail and {a.action for a in mail} == {"reply"}  # mail has no statuses nor ratings
    assert all(a.fields["from"].endswith("@customers.example") for a in mail)
    assert simulated_customers([record("u", "", "", channel="zendesk")]) == []  # undecided: nobody acts


def test_every_helpdesk_ticket_is_solved_and_rated_on_its_own_scale_replies_come_first():
    actions = simulated_customers(CUSTOMERS)
    per_ticket: dict[str, list] = {}
    for action in actions:
        per_ticket.setdefault(action.ticket_id, []).append(action)
    for ticket, done in per_ticket.items():
        channel = done[0].channel
        whats = [a.what for a in done]
        if channel == "email":
            continue
        assert whats.count("solved") == 1, ticket
        solved = whats.index("solved")
        assert all(w in ("repetition", "follow_up") for w in whats[:solved]), ticket
        assert all(w in ("rating", "reopen") for w in whats[solved + 1:]), ticket
        assert done[solved].fields == {"status": SOLVED_STATUS[channel]}
        for rating in (a for a in done if a.what == "rating"):
            scale = {score for weighted in RATINGS[channel] for score, _ in weighted}
            assert rating.fields["score"] in scale, ticket
    whats = Counter(a.what for a in actions)
    assert whats["repetition"] > 0 and whats["follow_up"] > 0 and whats["reopen"] > 0 and whats["rating"] > 0


def test_the_ratings_are_ones_the_gateways_adapters_accept():
    assert all(1 <= score <= 5 for weighted in RATINGS["intercom"] for score, _ in weighted)
    assert all(score in freshdesk.SURVEY_SCORES for weighted in RATINGS["freshdesk"] for score, _ in weighted)
    assert {score for weighted in RATINGS["zendesk"] for score, _ in weighted} == {"good", "bad"}
    assert intercom.rating_score(5) == 100.0


def test_customers_who_repeated_themselves_rate_lower():
    actions = simulated_customers(CUSTOMERS * 3)
    repeated = {a.ticket_id for a in actions if a.what == "repetition"}
    scores = {"good": 1.0, "bad": 0.0}
    zendesk = [(a.ticket_id in repeated, scores[a.fields["score"]]) for a in actions
               if a.what == "rating" and a.channel == "zendesk"]
    after_repeating = [s for r, s in zendesk if r]
    otherwise = [s for r, s in zendesk if not r]
    assert after_repeating and sum(after_repeating) / len(after_repeating) < sum(otherwise) / len(otherwise)
    assert all(a.fields["text"] in REPETITIONS for a in actions if a.what == "repetition")


def test_acting_calls_each_channel_in_order_and_keeps_the_gateways_answers():
    calls = []

    def act(provider, ticket, action, **fields):
        calls.append((provider, ticket, action, fields))
        return [{"event": f"{provider}.{action}", "delivery_id": "d", "outcome": {"status": 202}}]

    actions = simulated_customers(CUSTOMERS[:20])
    done = act_on_channels(act, actions)
    assert [(c[0], c[1], c[2]) for c in calls] == [(a.channel, a.external_id, a.action) for a in actions]
    assert all(a.answers == [(f"{a.channel}.{a.action}", 202)] for a in done)
    assert as_json(done)[0]["answers"] == [(f"{done[0].channel}.{done[0].action}", 202)]


def test_the_csat_given_is_each_accepted_rating_on_the_gateways_0_to_100_scale():
    actions = [a for a in simulated_customers(CUSTOMERS) if a.what == "rating"][:6]
    for index, action in enumerate(actions):
        action.answers = [("webhook", 202 if index else 400)]  # the first one refused
    given = csat_given(actions)
    assert actions[0].ticket_id not in given
    for action in actions[1:]:
        [score] = given[action.ticket_id]
        assert 0.0 <= score <= 100.0
        if action.channel == "zendesk":
            assert score == (100.0 if action.fields["score"] == "good" else 0.0)
        elif action.channel == "intercom":
            assert score == (action.fields["score"] - 1) * 25.0


# --- the agents -----------------------------------------------------------------------------------


def test_every_agent_payload_is_feedback_the_gateway_accepts_and_none_is_a_csat():
    payloads = simulated_agent_feedback(RECORDS, NOTES)
    for payload in payloads:
        ticket_id, fields = feedback_from_payload(payload)
        assert ticket_id == payload["ticket_id"] and fields
    assert {p["kind"] for p in payloads} == {"draft_verdict", "resolution"}  # CSAT is the customers', by channel


def test_each_ticket_gets_its_resolution_last_and_the_draw_is_reproducible():
    payloads = simulated_agent_feedback(RECORDS, NOTES)
    assert payloads == simulated_agent_feedback(RECORDS, NOTES)
    assert payloads != simulated_agent_feedback(RECORDS, NOTES, seed=8)
    grouped = by_ticket(payloads)
    assert list(grouped) == [r["id"] for r in RECORDS]
    for ticket_id, items in grouped.items():
        kinds = [item["kind"] for item in items]
        assert kinds in (["resolution"], ["draft_verdict", "resolution"]), ticket_id


def test_only_review_drafts_get_a_verdict_and_a_kept_draft_cites_its_articles():
    grouped = by_ticket(simulated_agent_feedback(RECORDS, NOTES))
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
    grouped = by_ticket(simulated_agent_feedback(RECORDS, NOTES))
    bot = grouped["t0"][-1]
    assert bot["resolved_by_bot"] and bot["handle_time_s"] == 0 and bot["resolution_notes"] == ""
    for ticket_id, notes in (("t2", NOTES["card_arrival"]), ("t3", NOTES["pending_top_up"]), ("r0", "")):
        resolution = grouped[ticket_id][-1]
        assert not resolution["resolved_by_bot"] and resolution["handle_time_s"] >= 180
        assert resolution["resolution_notes"] == notes


def test_unbacked_resolutions_are_those_with_notes_that_cite_nothing():
    payloads = simulated_agent_feedback(RECORDS, NOTES)
    grouped = unbacked_resolutions(RECORDS, payloads)
    t1_cites = by_ticket(payloads)["t1"][-1]["cited_article_ids"]
    assert grouped["pending_top_up"] == ["t3", "t4"]
    assert grouped["card_arrival"] == (["t1", "t2"] if not t1_cites else ["t2"])
    assert "exchange_rate" not in grouped  # no notes for that intent


# --- the summary ----------------------------------------------------------------------------------


def test_the_summary_says_what_each_channels_customers_did_and_quotes_the_first_proposals():
    actions = simulated_customers(CUSTOMERS[:50])
    for action in actions:
        action.answers = [("webhook", 250 if action.channel == "email" else 202)]
    payloads = simulated_agent_feedback(RECORDS, NOTES)
    tickets = {"t2": ("Card not here after two weeks", NOTES["card_arrival"]),
               "t5": ("Where is my new card?", NOTES["card_arrival"])}
    proposals = [proposal("rho-bank", intent, tickets) for intent in ("card_arrival", "a", "b", "c", "d")]
    text = format_outcomes(actions, CUSTOMERS[:50], payloads, proposals, min_tickets=2)
    assert "SIMULATED" in text
    zendesk = Counter(a.what for a in actions if a.channel == "zendesk")
    line = next(line for line in text.splitlines() if line.startswith("zendesk "))
    assert f"solved {zendesk['solved']}, rated {zendesk['rating']}, reopened {zendesk['reopen']}" in line
    assert f"({zendesk['repetition']} saying they already explained it)" in line
    assert f"gateway answered 202 x{sum(zendesk.values())}" in line
    email = next(line for line in text.splitlines() if line.startswith("email "))
    assert "solved" not in email and "250 x" in email
    assert "api        10 tickets: the API channel has no customer-facing helpdesk" in text
    assert f"{len(payloads)} feedback events" in text and "resolution 35" in text
    assert "proposed (a topic whose answers the KB did not back 2 times): 5" in text
    assert '[card_arrival] "Card arrival" from 2 tickets' in text
    assert "asked: Card not here after two weeks" in text and "resolved: Re-issued the card." in text
    assert "... and 2 more on topics c, d" in text
    assert format_outcomes([], [], payloads, [], min_tickets=3).rstrip().endswith("did not back 3 times): 0")
