"""The demo's round trip, without servers: reading `--input` tickets, the citations and numbers read
back from what a channel received, and the quality figures computed from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tooling.round_trip import (
    HelpCenterArticle,
    InputError,
    citations_from_html,
    read_input,
    reply_numbers,
    round_trip_quality,
)


def write(tmp_path: Path, *records: object) -> Path:
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def ticket(**fields: object) -> dict:
    return {"id": "t-1", "tenant": "demo-bank", "channel": "zendesk", "subject": "Card", "body": "Where is my card?",
            "customer": {"id": "cust-0001", "email": "ana@example.com"}} | fields


def test_input_tickets_are_read_with_their_channel_and_customer(tmp_path: Path) -> None:
    [first, second] = read_input(write(tmp_path, ticket(), ticket(id="t-2", channel="EMAIL", customer=None)))
    assert (first.id, first.channel, first.customer_id, first.customer_email) == ("t-1", "zendesk", "cust-0001", "ana@example.com")
    assert second.channel == "email" and second.customer_id == "cust-t-2" and "@" in second.customer_email


@pytest.mark.parametrize("record, problem", [
    ("not json", "not JSON"),
    (ticket(id=""), "id is missing"),
    (ticket(channel="fax"), "channel must be one of"),
    (ticket(subject="", body=" "), "a subject or a body"),
    (ticket(customer={"id": "c", "email": "nobody"}), "is not an address"),
])
def test_a_bad_input_line_is_refused_naming_the_line(tmp_path: Path, record: object, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as refused:
        read_input(write(tmp_path, ticket(id="t-0"), record))
    assert ":2:" in str(refused.value)


def test_an_id_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="appears twice"):
        read_input(write(tmp_path, ticket(), ticket()))


def test_citations_are_the_help_center_links_in_order_once_each() -> None:
    html = ('<p>Answer.</p><p>Sources:<br><a href="https://help.example/hc/en-us/articles/3600100004-Top-ups">Top-ups</a>'
            '<a href="https://help.example/hc/en-us/articles/3600100001">Fees</a>'
            '<a href="https://help.example/hc/en-us/articles/3600100004">Top-ups again</a><a href="https://other.example/x">x</a></p>')
    assert citations_from_html(html) == [
        {"article_id": "3600100004", "title": "Top-ups", "url": "https://help.example/hc/en-us/articles/3600100004-Top-ups"},
        {"article_id": "3600100001", "title": "Fees", "url": "https://help.example/hc/en-us/articles/3600100001"},
    ]


def test_a_reply_s_numbers_leave_out_citation_marks_and_source_lines() -> None:
    text = "A top-up by card costs £0.50 [1], and arrives in 3 to 5 working days [2].\nSources:\n[1] Fees: https://h/articles/3600100001"
    assert reply_numbers(text) == {"0.50", "3", "5"}


ARTICLES = {
    "1": HelpCenterArticle("1", "When will my card arrive?", ("card_arrival",), "Cards arrive in 3 to 5 working days."),
    "2": HelpCenterArticle("2", "Fees", (), "A top-up by card costs £0.50."),
}


def reply(*article_ids: str, text: str = "Your card arrives in 3 to 5 working days [1].") -> dict:
    return {"kind": "reply", "text": text, "citations": [{"article_id": a, "title": "", "url": ""} for a in article_ids]}


def test_quality_counts_answers_first_citations_and_unsupported_numbers_per_archetype() -> None:
    records = [
        {"id": "a", "label": "card_arrival", "true_archetype": "repetitive", "decision": "respond", "delivered": [reply("1")]},
        {"id": "b", "label": "card_arrival", "true_archetype": "repetitive", "decision": "respond",
         "delivered": [reply("2", "1", text="It costs £0.75 [1].")]},  # wrong first article, a number no article has
        {"id": "c", "label": "card_arrival", "true_archetype": "repetitive", "decision": "review",
         "delivered": [{"kind": "note", "text": "", "citations": []}]},
        {"id": "d", "label": "pending_transfer", "true_archetype": "account_specific", "decision": "review", "delivered": []},
        {"id": "e", "label": "hostile:prompt_injection", "decision": "escalate", "delivered": []},  # not labelled with an intent
    ]
    quality = round_trip_quality(records, ARTICLES)
    everything = quality["all"]
    assert everything["tickets"] == 4 and everything["answered_automatically"] == 2
    assert everything["auto_answer_share"] == 0.5
    assert everything["primary_citation_on_true_intent"] == 0.5
    assert everything["max_articles_cited"] == 2
    assert everything["replies_with_unsupported_numbers"] == 1
    assert everything["unsupported_numbers"] == [{"id": "b", "numbers": ["0.75"]}]
    assert quality["account_specific"]["answered_automatically"] == 0
    assert quality["account_specific"]["primary_citation_on_true_intent"] is None
    assert quality["repetitive"]["auto_answer_share"] == round(2 / 3, 4)


def test_a_number_from_the_tickets_account_evidence_is_supported_and_one_from_nowhere_is_not() -> None:
    finding = {"summary": "The top-up of 92.73 GBP is pending for 9.9 hours so far.", "facts": {"amount": "92.73"}}
    text = "Your top-up of 92.73 GBP is pending for 9.9 hours; cards arrive in 3 to 5 working days [1]. Fee 4.20."
    records = [{"id": "a", "label": "pending_top_up", "true_archetype": "account_specific", "decision": "respond",
                "investigation": {"findings": [finding]}, "delivered": [reply("1", text=text)]},
               {"id": "b", "label": "pending_top_up", "true_archetype": "account_specific", "decision": "respond",
                "delivered": [reply("1", text=text)]}]  # the same reply without the evidence behind it
    unsupported = round_trip_quality(records, ARTICLES)["all"]["unsupported_numbers"]
    assert unsupported == [{"id": "a", "numbers": ["4.20"]}, {"id": "b", "numbers": ["4.20", "9.9", "92.73"]}]
