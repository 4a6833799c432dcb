"""The offline drafter on real Rho-Bank articles: the right sentence from the right article, list
items whole, nothing agent-facing, channel limits, honest holding replies."""

from __future__ import annotations

import re
from functools import lru_cache

import pytest

from supportflow.contracts.v1 import ticket_pb2 as tk
from tooling.sample_data import kb_articles

from services.drafter.drafting import draft_reply
from services.drafter.offline import OfflineDrafter, ScoredUnit, missing_figure
from services.drafter.overreach import action_claim
from services.drafter.passage_units import PassageUnit, passage_units
from services.drafter.policy_ledger import quantities
from services.drafter.templates import TemplateBook

NAVY_ATM = "doc_business_checking_accounts_navy_blue_009"
LIME_WIRES = "doc_business_checking_accounts_lime_green_004"
EVERYONE_PAY_FAQ = "doc_everyone_pay_everyone_pay_015"
REG_E = "doc_bank_accounts_bank_accounts_(general)_037"
DARK_GREEN = "doc_checking_accounts_dark_green_account_001"
INTERNAL_SAVINGS = "doc_bank_accounts_bank_accounts_(general)_002"
VIRTUAL_CARDS = "doc_credit_cards_virtual_card_management_001"
CARD_REPLACEMENT = "doc_credit_cards_credit_card_replacements_003"
CASH_BACK = "doc_credit_cards_credit_cards_(general)_021"
GREEN_FEE_FREE = "doc_checking_accounts_green_fee-free_account_005"
BRONZE_SUMMARY = "doc_savings_accounts_bronze_account_002"


@lru_cache(maxsize=1)
def articles() -> dict[str, dict]:
    return {a["id"]: a for a in kb_articles()}


def passage(article_id: str, *, policy: bool = True, stale: bool = False) -> tk.EvidencePassage:
    article = articles()[article_id]
    return tk.EvidencePassage(
        article_id=article_id,
        chunk_id=f"{article_id}#0",
        title=article["title"],
        text=article["content"],
        is_policy=policy,
        stale=stale,
        source="internal_policy" if article["title"].startswith("Internal:") else "help_center",
    )


@pytest.fixture(scope="module")
def drafter() -> OfflineDrafter:
    return OfflineDrafter(TemplateBook.load())


def draft(
    drafter: OfflineDrafter,
    question: str,
    evidence: list[tk.EvidencePassage],
    *,
    channel: int = tk.CHANNEL_EMAIL,
    missing: tuple[str, ...] = (),
    tenant: str = "rho-bank",
    classification: tk.Classification | None = None,
) -> tk.Draft:
    return draft_reply(
        tk.Ticket(ticket_id="t-1", tenant_id=tenant, channel=channel, body=question),
        tk.NormalizedTicket(problem_statement=question, missing_identifiers=list(missing)),
        classification or tk.Classification(confidence=0.9, route=tk.ROUTE_AUTO_RESPOND),
        evidence,
        generator=drafter,
    )


def answer_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"\[\d\]\.$", line)]


def test_quotes_the_fee_that_answers_the_question_with_its_citation(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "What does a domestic outgoing wire cost on Lime Green?", [passage(LIME_WIRES), passage(NAVY_ATM)])
    assert result.status == tk.DRAFT_STATUS_READY
    assert result.generator == "offline"
    assert "Domestic outgoing wire: $10.00 per transfer [1]." in result.text
    assert [c.article_id for c in result.citations] == [LIME_WIRES]  # the top article only
    assert "$10.00" in result.citations[0].passage
    assert result.ledger and all(c.verified for c in result.ledger)
    assert result.grounding == 1.0


def test_a_reply_about_the_other_direction_of_money_is_judged_off_the_question(drafter: OfflineDrafter) -> None:
    # Only the outgoing half of the wire article is retrieved; the customer asks about receiving.
    outgoing_only = passage(LIME_WIRES)
    outgoing_only.text = outgoing_only.text.split("## Incoming")[0]
    result = draft(drafter, "What does it cost to receive a wire on Lime Green?", [outgoing_only])
    assert "outgoing" in result.text.lower()
    assert result.answerability == tk.ANSWERABILITY_NOT_ANSWERED
    assert result.answerability_reason == "the question is about incoming money; the quoted passages are about outgoing"


def test_a_reply_that_moves_money_the_asked_way_is_left_unjudged(drafter: OfflineDrafter) -> None:
    for question in ("How many incoming wires are free on Lime Green?", "What does a domestic outgoing wire cost on Lime Green?"):
        result = draft(drafter, question, [passage(LIME_WIRES)])
        assert result.status == tk.DRAFT_STATUS_READY and result.citations, question
        # Matching words is no proof of an answer: the offline drafter never claims ANSWERED.
        assert result.answerability == tk.ANSWERABILITY_UNSPECIFIED and not result.answerability_reason, question


def test_how_to_steps_for_a_customer_who_is_waiting_are_judged_off_the_question(drafter: OfflineDrafter) -> None:
    # On chat the reply has room for the first steps only; on email it also quotes step 4
    # ("issued in 5 seconds if instant issuance is enabled"), which does speak of timing.
    result = draft(drafter, "Why have I not received a virtual card yet?", [passage(VIRTUAL_CARDS)], channel=tk.CHANNEL_CHAT)
    assert result.status == tk.DRAFT_STATUS_READY and result.citations  # it quotes the steps...
    assert result.answerability == tk.ANSWERABILITY_NOT_ANSWERED  # ...which do not answer
    assert result.answerability_reason == (
        "the customer is waiting for something; the quoted passages say nothing of delivery, timing or status"
    )


def test_a_reply_saying_when_a_card_arrives_is_left_unjudged(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "I ordered a replacement card, when will it arrive?", [passage(CARD_REPLACEMENT)])
    assert result.status == tk.DRAFT_STATUS_READY and result.citations
    assert result.answerability == tk.ANSWERABILITY_UNSPECIFIED and not result.answerability_reason


def test_a_how_much_question_answered_without_an_amount_is_judged_off_the_question(drafter: OfflineDrafter) -> None:
    steps_only = passage(VIRTUAL_CARDS)  # the steps to create a card, not its fee
    steps_only.text = steps_only.text.split("## Capacity")[0].split("## Create your first virtual card")[1]
    result = draft(drafter, "How much does it cost to create a virtual card?", [steps_only])
    assert result.status == tk.DRAFT_STATUS_READY and result.citations
    assert result.answerability == tk.ANSWERABILITY_NOT_ANSWERED
    assert result.answerability_reason == "the question asks for an amount; the quoted passages give none"
    # With the fee in the passages, the reply quotes it and is left unjudged.
    result = draft(drafter, "How much does it cost to create a virtual card?", [passage(VIRTUAL_CARDS)])
    assert "$25.00" in result.text
    assert result.answerability == tk.ANSWERABILITY_UNSPECIFIED


def test_a_time_question_gets_the_time_not_a_fee(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "How long do I have to cancel an Everyone Pay payment?", [passage(EVERYONE_PAY_FAQ)], channel=tk.CHANNEL_CHAT)
    assert "within 17 minutes of submission [1]" in result.text
    assert "$0.75" not in result.text


def test_list_items_are_quoted_whole(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "What is my liability if someone uses my debit card without permission?", [passage(REG_E)])
    assert "Within 2 business days: Maximum $50 liability [1]." in result.text
    assert "Within 60 days: Maximum $500 liability [1]." in result.text


def test_list_items_that_say_nothing_alone_are_merged_into_their_lead_line() -> None:
    texts = [u.text for u in passage_units(passage(CASH_BACK), 0)]
    assert ("To help us investigate quickly, it's helpful to have the following information ready when you contact us: "
            "The date of the transaction in question; The merchant name and purchase amount; The cash back amount you "
            "received versus what you expected; Any receipts or documentation you have from the purchase.") in texts
    assert "The cash back amount you received versus what you expected." not in texts


def test_the_items_of_a_long_list_stay_apart_with_their_lead_line_as_context() -> None:
    units = passage_units(passage(CASH_BACK), 0)
    items = [u for u in units if u.context == "You might want to contact us about your cash back if:"]
    assert len(items) == 5 and all(u.bullet for u in items)
    assert items[0].text == "A purchase that should have earned bonus cash back only received the standard rate."


def test_items_stating_figures_stay_apart_and_phrases_completing_a_sentence_join_it() -> None:
    units = passage_units(passage(REG_E), 0)
    lead = "If someone uses your debit card without permission, your liability is limited based on how quickly you report it:"
    assert [u.text for u in units if u.context == lead][:2] == [
        "Within 2 business days: Maximum $50 liability.", "Within 60 days: Maximum $500 liability."]
    assert any(u.text.startswith("Regulation E applies to electronic fund transfers including: Debit card purchases "
                                 "(both PIN and signature transactions); ATM withdrawals and deposits; Direct deposits;")
               for u in units)


def test_nested_list_lines_are_merged_into_their_lead() -> None:
    units = passage_units(passage(NAVY_ATM), 0)
    assert any(u.text == "Calculation: The fee equals the greater of: 3% of the cash withdrawal amount, or $5.00 (minimum)." for u in units)


def test_a_branch_of_a_decision_is_not_quoted_without_its_question() -> None:
    flow = tk.EvidencePassage(
        article_id="limits", chunk_id="limits#0", title="Setting spending limits per card", section="Restrict categories",
        text="- Decide whether the card should be restricted to some merchants.\n"
             "- If Yes, enable category restrictions and select the allowed categories.\n"
             "- If No, leave every category open.\n"
             "- Otherwise, ask your administrator for the policy.\n"
             "- If not activated within 30 days, the card is cancelled.",
        score=1.0,
    )
    texts = [u.text for u in passage_units(flow, 0)]
    assert texts == [
        "Decide whether the card should be restricted to some merchants.",
        "If not activated within 30 days, the card is cancelled.",
    ]


def test_agent_facing_content_is_never_quoted(drafter: OfflineDrafter) -> None:
    units = [u.text for u in passage_units(passage(REG_E), 0)]
    assert not any("CODE" in text or "transfer_to_human" in text or "Say:" in text for text in units)
    result = draft(drafter, "How do I open a savings account and fund it?", [passage(INTERNAL_SAVINGS)])
    assert result.status == tk.DRAFT_STATUS_NO_EVIDENCE  # an internal article alone is not quotable
    assert "open_bank_account" not in result.text


def test_chat_is_short_and_email_is_longer(drafter: OfflineDrafter) -> None:
    question = "What fees apply at ATMs outside the network and abroad for Navy Blue?"
    chat = draft(drafter, question, [passage(NAVY_ATM)], channel=tk.CHANNEL_CHAT)
    email = draft(drafter, question, [passage(NAVY_ATM)], channel=tk.CHANNEL_EMAIL)
    assert len(chat.text) <= 480
    assert len(answer_lines(chat.text.replace(". ", ".\n"))) <= 2
    assert len(email.text) > len(chat.text)
    assert chat.text.startswith("Hi!") and email.text.startswith("Hello,")
    assert email.text.rstrip().endswith("Rho-Bank Support")


def test_the_same_number_is_not_repeated(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "What is the minimum age for a Dark Green account?", [passage(DARK_GREEN)])
    assert result.text.count(": 17") == 1


def test_missing_identifiers_and_stale_articles_are_said(drafter: OfflineDrafter) -> None:
    result = draft(
        drafter,
        "I was charged for a wire, what does a domestic outgoing wire cost?",
        [passage(LIME_WIRES, stale=True)],
        missing=("transaction_id",),
    )
    assert "I still need the transaction ID." in result.text
    assert "due for review" in result.text
    assert [citation.stale for citation in result.citations] == [True]  # the escalator holds it for an agent
    assert result.answerability == tk.ANSWERABILITY_UNSPECIFIED  # the offline drafter does not judge it
    assert list(result.follow_up_questions) == ["Could you send us the transaction ID?"]
    assert result.next_step and result.next_step in result.text


def test_missing_identifiers_are_asked_for_as_alternatives_in_one_question(drafter: OfflineDrafter) -> None:
    """Any one of a group finds the transaction: "the ID, the amount or the date", asked once."""
    result = draft(drafter, "Where is the money I transferred?", [passage(LIME_WIRES)],
                   missing=("transaction_id", "amount", "date"))
    assert list(result.follow_up_questions) == [
        "Could you send us the transaction ID, the amount involved or the date it happened?"]
    assert "I still need the transaction ID, the amount involved or the date it happened." in result.text


def test_numbers_from_non_canonical_passages_are_never_quoted(drafter: OfflineDrafter) -> None:
    forum = tk.EvidencePassage(
        article_id="community-1", title="Community tips", is_policy=False,
        text="- A domestic outgoing wire on Lime Green costs $5.00 per transfer, a friend told me.",
    )
    result = draft(drafter, "What does a domestic outgoing wire cost on Lime Green?", [forum, passage(LIME_WIRES)])
    assert "$5.00" not in result.text
    assert "$10.00" in result.text


def test_no_evidence_gives_an_honest_holding_reply(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "Can I pay my rent in bitcoin?", [], channel=tk.CHANNEL_EMAIL)
    assert result.status == tk.DRAFT_STATUS_NO_EVIDENCE
    assert result.citations == [] and result.ledger == []
    assert "couldn't find" in result.text
    assert quantities(result.text) == []
    assert all(action_claim(line) is None for line in result.text.splitlines())


def test_irrelevant_evidence_is_no_evidence(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "Can I pay my rent in bitcoin?", [passage(DARK_GREEN)])
    assert result.status == tk.DRAFT_STATUS_NO_EVIDENCE


def test_templates_follow_the_tenant(drafter: OfflineDrafter) -> None:
    result = draft(drafter, "What does a domestic outgoing wire cost on Lime Green?", [passage(LIME_WIRES)], tenant="acme")
    assert result.text.rstrip().endswith("Customer Support")
    assert "Here is what applies to your question:" in result.text


class KeywordEncoder:
    """A stand-in encoder that knows one synonym: money to another bank is a wire."""

    def encode(self, texts: list[str]):  # type: ignore[no-untyped-def]
        import numpy as np

        def topic(text: str) -> list[float]:
            return [1.0, 0.0] if "wire" in text.lower() or "another bank" in text.lower() else [0.0, 1.0]

        return np.array([topic(t) for t in texts], dtype=np.float32)


def test_a_reply_about_another_product_than_the_one_named_is_judged_off_the_question(drafter: OfflineDrafter) -> None:
    question = "What APY does the Bronze savings account pay, and is there a monthly fee?"
    other = draft(drafter, question, [passage(GREEN_FEE_FREE)])
    assert other.status == tk.DRAFT_STATUS_READY  # the Green account's page mentions linking a Bronze account
    assert other.answerability == tk.ANSWERABILITY_NOT_ANSWERED
    assert other.answerability_reason == 'the question names "Bronze"; no quoted article is about it'
    own = draft(drafter, question, [passage(BRONZE_SUMMARY), passage(GREEN_FEE_FREE)])
    assert own.status == tk.DRAFT_STATUS_READY
    assert own.answerability == tk.ANSWERABILITY_UNSPECIFIED
    assert any(c.article_id == BRONZE_SUMMARY for c in own.citations)


def test_the_encoder_can_make_a_passage_relevant_without_shared_words() -> None:
    question = "What do I pay to send money to another bank?"
    plain = draft(OfflineDrafter(TemplateBook.load()), question, [passage(LIME_WIRES)])
    with_encoder = draft(OfflineDrafter(TemplateBook.load(), KeywordEncoder()), question, [passage(LIME_WIRES)])
    assert plain.status == tk.DRAFT_STATUS_NO_EVIDENCE
    assert with_encoder.status == tk.DRAFT_STATUS_READY


def test_a_line_on_another_product_is_not_quoted_for_the_one_named(drafter: OfflineDrafter) -> None:
    # The Diamond Elite Account's page lists an APY bonus per card; the Crypto-Cash Back Card's
    # line says "cash back" too, but it is about another card.
    question = "What cash back do I get with the Diamond Elite card?"
    result = draft(drafter, question, [passage("doc_savings_accounts_diamond_elite_account_011"),
                                       passage("doc_credit_cards_diamond_elite_card_003")])
    assert result.status == tk.DRAFT_STATUS_READY
    assert "Crypto" not in result.text and "0.15%" not in result.text
    assert "5.0% cash back" in result.text


@pytest.mark.parametrize(
    "question, quoted, wanted",
    [
        ("How much is an outgoing wire?", "Go to Transfers and choose Wire.", "an amount"),
        ("How much is an outgoing wire?", "Outgoing wires are $15.00 each.", ""),
        ("What is the fee for a replacement card?", "Replacement cards are free of charge.", ""),
        ("How much time do I have to dispute a charge?", "Open Disputes in the app.", "a time"),
        ("How long does a transfer take?", "Transfers between your accounts are instant.", ""),
        ("How long does a transfer take?", "Most transfers complete within 2 business days.", ""),
        ("How fast does the concierge acknowledge a request?", "The concierge team is available around the clock.",
         "a time"),
        ("How quickly does the concierge acknowledge a request?", "You get an acknowledgment within 2 hours.", ""),
        ("How soon will my card arrive?", "Cards arrive within 5 working days.", ""),
        ("Can I send a wire abroad?", "Go to Transfers and choose Wire.", ""),  # asks for no figure
    ],
)
def test_a_question_for_a_figure_needs_a_figure_of_its_kind(question: str, quoted: str, wanted: str) -> None:
    unit = PassageUnit(passage=0, order=0, text=quoted, source_text=quoted, section="", context="", bullet=False, from_table=False)
    assert missing_figure(question, [ScoredUnit(unit, 1.0, 0)]) == wanted


def test_a_how_to_question_answered_with_what_happens_around_the_action_is_judged_off_it(drafter: OfflineDrafter) -> None:
    # The article says what follows an order (emails, tracking, updating merchants), not how to place one.
    result = draft(drafter, "How do I go about ordering a new bank card?", [passage(CARD_REPLACEMENT)], channel=tk.CHANNEL_CHAT)
    assert result.status == tk.DRAFT_STATUS_READY and result.citations
    assert result.answerability == tk.ANSWERABILITY_NOT_ANSWERED
    assert result.answerability_reason == 'the question asks how to do something ("ordering"); the quoted passages do not say how'
    # The steps to create a virtual card do say how.
    result = draft(drafter, "How do I create a virtual card?", [passage(VIRTUAL_CARDS)], channel=tk.CHANNEL_CHAT)
    assert result.status == tk.DRAFT_STATUS_READY and result.citations
    assert result.answerability == tk.ANSWERABILITY_UNSPECIFIED and not result.answerability_reason


def test_the_article_tagged_with_the_predicted_intent_is_quoted_over_one_that_shares_more_words(drafter: OfflineDrafter) -> None:
    question = "Is it possible to get another card?"
    linking = tk.EvidencePassage(
        article_id="101", chunk_id="101#0", title="How do I link another card to the app?", is_policy=False,
        text="To link another card, open the app and tap Cards. Is it possible to link another card? Yes, any debit card.",
        intents=["card_linking"], score=0.9, source="help_center")
    spare = tk.EvidencePassage(
        article_id="102", chunk_id="102#0", title="Can I have a spare card?", is_policy=False,
        text="You can order a spare card for yourself from the Cards screen in the app.",
        intents=["getting_spare_card"], score=0.5, source="help_center")
    classification = tk.Classification(intent="getting_spare_card", confidence=0.99, route=tk.ROUTE_AUTO_RESPOND)
    tagged = draft(drafter, question, [spare, linking], classification=classification)
    assert [c.article_id for c in tagged.citations] == ["102"], tagged.text
    untagged = [tk.EvidencePassage(article_id=p.article_id, chunk_id=p.chunk_id, title=p.title, text=p.text,
                                   score=p.score, source=p.source) for p in (spare, linking)]
    plain = draft(drafter, question, untagged, classification=classification)
    assert "101" in [c.article_id for c in plain.citations], plain.text  # without tags, the word overlap decides


def _help_center_passage(slug: str, score: float) -> tk.EvidencePassage:
    from pathlib import Path

    from services.retriever.articles import load_articles

    folder = Path(__file__).resolve().parents[2] / "tenants" / "demo-bank" / "help-center"
    [article] = [a for a in load_articles(folder) if a.title.lower().startswith(slug)]
    return tk.EvidencePassage(article_id=article.article_id, chunk_id=f"{article.article_id}#0", title=article.title,
                              text=article.content, score=score, is_policy=bool(article.is_policy),
                              intents=list(article.intents), source="help_center")


def test_a_figure_an_article_repeats_from_the_policy_article_is_quoted_and_cites_both(drafter: OfflineDrafter) -> None:
    """The focused article says how long a transfer takes in the policy article's words; its own
    page is not canonical, so the reply quotes it with the policy article as the figure's source
    and the ledger verifies the figure there."""
    timing = _help_center_passage("how long does a transfer take", 0.9)
    policy = _help_center_passage("fees, limits and timings", 0.5)
    result = draft(drafter, "How long will it take to transfer money from Europe?", [timing, policy], tenant="demo-bank",
                   classification=tk.Classification(intent="transfer_timing", confidence=0.95,
                                                    route=tk.ROUTE_AUTO_RESPOND))
    assert result.status == tk.DRAFT_STATUS_READY
    assert "within 1 working day" in result.text
    assert [c.article_id for c in result.citations][:2] == [timing.article_id, policy.article_id]
    figures = [claim for claim in result.ledger if "working day" in claim.claim]
    assert figures and all(claim.verified and claim.article_id == policy.article_id for claim in figures)
    # Without the policy article in the evidence the figure cannot be verified, so it is not quoted.
    alone = draft(drafter, "How long will it take to transfer money from Europe?", [timing], tenant="demo-bank",
                  classification=tk.Classification(intent="transfer_timing", confidence=0.95,
                                                   route=tk.ROUTE_AUTO_RESPOND))
    assert "within 1 working day" not in alone.text


AUTO_TOP_UP = tk.EvidencePassage(
    article_id="auto-top-up", chunk_id="auto-top-up#0", title="How do I set up automatic top-ups?", is_policy=False,
    score=0.9,
    text="Auto top-up adds money from a saved card whenever your balance falls below an amount you choose.\n\n"
         "## Set it up\n1. Open the app and tap Add money.\n2. Tap Auto top-up.\n"
         "3. Choose the balance that should trigger a top-up.\n4. Choose how much to add each time.\n"
         "5. Select the card to charge and tap Save.\n\n"
         "## Turn it off\nOpen Add money > Auto top-up and switch it off.")
STEPS = ["Open the app and tap Add money", "Tap Auto top-up", "Choose the balance that should trigger a top-up",
         "Choose how much to add each time", "Select the card to charge and tap Save"]


def test_a_procedure_is_quoted_whole_where_it_fits(drafter: OfflineDrafter) -> None:
    """Step 1 alone ("Open the app and tap Add money") leaves the customer stuck: a quoted step
    brings the rest of its numbered list, in order, when the reply has room for it."""
    text = draft(drafter, "How do I set up an automatic top-up?", [AUTO_TOP_UP], tenant="demo-bank").text
    positions = [text.find(step) for step in STEPS]
    assert -1 not in positions and positions == sorted(positions), text
    # Chat has room for a few short sentences: this list does not fit, so the steps it quotes are
    # the first ones, in order (step 3 is of no use without 1 and 2), each once.
    long_steps = [f"{step}, then wait for the next screen" for step in STEPS]  # more than chat has room for
    longer = tk.EvidencePassage()
    longer.CopyFrom(AUTO_TOP_UP)
    longer.text = "## Set it up\n" + "\n".join(f"{n}. {step}." for n, step in enumerate(long_steps, start=1))
    chat = draft(drafter, "How do I choose how much to add each time with auto top-up?", [longer], tenant="demo-bank",
                 channel=tk.CHANNEL_CHAT).text
    quoted = [step for step in long_steps if step in chat]
    assert quoted and quoted == long_steps[:len(quoted)] and len(quoted) < len(long_steps), chat
    assert all(chat.count(step) == 1 for step in quoted)
