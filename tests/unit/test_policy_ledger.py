"""The policy-claim ledger: quantities are normalised, and a claim survives only when a cited
canonical passage states the same quantity in a related line."""

from __future__ import annotations

import pytest

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.drafter.policy_ledger import CLAIM_KINDS, PassageBacking, check_policy_claims, parse_number, quantities
from services.drafter.reply import ReplyParts, Sentence, SourceRef

WIRES = tk.EvidencePassage(
    article_id="lime_green_004",
    title="Lime Green Account: Wire Transfer Pricing",
    section="Outgoing wire fees",
    text=(
        "- Domestic outgoing wire: $10.00 per transfer.\n"
        "- International outgoing wire: $25.00 per transfer.\n"
        "- You receive up to ten incoming domestic wires per monthly cycle at no charge.\n"
        "- Refunds of wire fees are reviewed within 30 days.\n"
    ),
    is_policy=True,
)
PERKS = tk.EvidencePassage(
    article_id="dark_green_001",
    title="Dark Green Account at a glance",
    section="Rewards",
    text="- Graduation transition bonus: $10.00.\n- Minimum primary holder age: 17\n- APY: 1.5%\n- Mobile check deposit daily limit: $1,500",
    is_policy=True,
)
FORUM = tk.EvidencePassage(
    article_id="community_77",
    title="Community: wire fees",
    text="Someone told me the domestic wire fee is $5.",
    is_policy=False,
)


def reply(*sentences: Sentence, sources: tuple[tk.EvidencePassage, ...] = (WIRES,), **extra: object) -> ReplyParts:
    return ReplyParts(
        status=tk.DRAFT_STATUS_READY,
        generator="test",
        answer=sentences,
        sources=tuple(SourceRef(p) for p in sources),
        **extra,
    )


def values(text: str) -> list[tuple[float, str]]:
    return [(q.value, q.unit) for q in quantities(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The fee is $20.", [(20.0, "USD")]),
        ("The fee is 20 USD.", [(20.0, "USD")]),
        ("The fee is USD 20.", [(20.0, "USD")]),
        ("The fee is twenty dollars.", [(20.0, "USD")]),
        ("A charge of 50 cents applies.", [(0.5, "USD")]),
        ("Limit: $1,000 per day", [(1000.0, "USD")]),
        ("Limit: $1000", [(1000.0, "USD")]),
        ("You have 30 days.", [(30.0, "day")]),
        ("You have thirty days.", [(30.0, "day")]),
        ("A 30-day window.", [(30.0, "day")]),
        ("Within 5 business days.", [(5.0, "day")]),
        ("Paid 1 day(s) early.", [(1.0, "day")]),
        ("A rate of 3.5% APY.", [(3.5, "percent")]),
        ("Ten percent off.", [(10.0, "percent")]),
        ("You must be 18 years old.", [(18.0, "age")]),
        ("Minimum primary holder age: 17", [(17.0, "age")]),
        ("We answer 24/7.", [(1.0, "24/7")]),
        ("Cut-off is 5:30 PM.", [(17 * 60 + 30.0, "time")]),
        ("Earn 2x points.", [(2.0, "multiplier")]),
        ("Up to 10 wires a month.", [(10.0, "count")]),
        ("Call 1-800-555-0199.", [(18005550199.0, "contact")]),
    ],
)
def test_quantities_are_normalised(text: str, expected: list[tuple[float, str]]) -> None:
    assert values(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Use open_bank_account_4821 to open it.",  # an identifier, not a number
        "1. Open the app.",  # list numbering
        "See step 3 and code 41.",
        "Sources [1] and [P2], placeholder [EMAIL_1].",
        "Visit https://rho.example/help/2024 for more.",
        "One of your cards was declined.",  # a lone "one" is not a count in a draft
    ],
)
def test_non_claims_are_ignored(text: str) -> None:
    assert quantities(text) == []


def test_parse_number_handles_separators_words_and_scales() -> None:
    assert parse_number("1,000") == parse_number("1000") == 1000.0
    assert parse_number("one hundred and twenty-five") == 125.0
    assert parse_number("$2.5 million".lstrip("$")) == 2_500_000.0
    assert parse_number("10k") == 10_000.0


def test_a_claim_in_its_cited_canonical_passage_is_verified() -> None:
    outcome = check_policy_claims(reply(Sentence("A domestic outgoing wire costs $10.00 per transfer.", (0,))))
    assert not outcome.blocked
    assert [(c.kind, c.verified, c.article_id) for c in outcome.ledger] == [("fee", True, "lime_green_004")]
    assert outcome.ledger[0].passage == "- Domestic outgoing wire: $10.00 per transfer."
    assert len(outcome.parts.answer) == 1


def test_spelled_and_digit_forms_back_each_other() -> None:
    outcome = check_policy_claims(
        reply(
            Sentence("You get 10 incoming domestic wires free each month.", (0,)),
            Sentence("Wire fee refunds are reviewed within thirty days.", (0,)),
        )
    )
    assert all(c.verified for c in outcome.ledger)
    assert len(outcome.ledger) == 2


def test_an_invented_number_removes_its_sentence_and_is_logged_unverified() -> None:
    outcome = check_policy_claims(
        reply(
            Sentence("A domestic outgoing wire costs $10.00.", (0,)),
            Sentence("An international outgoing wire costs $25.00.", (0,)),
            Sentence("Refunds are possible within 90 days.", (0,)),
        )
    )
    assert not outcome.blocked
    assert [s.text for s in outcome.parts.answer] == [
        "A domestic outgoing wire costs $10.00.",
        "An international outgoing wire costs $25.00.",
    ]
    assert outcome.removed == ("Refunds are possible within 90 days.",)
    assert [(c.claim, c.verified) for c in outcome.ledger if not c.verified] == [("Refunds are possible within 90 days", False)]


def test_a_unit_mismatch_is_not_verification() -> None:
    # The passage has "30 days" and "$10.00"; neither backs "$30" nor "10 days".
    outcome = check_policy_claims(reply(Sentence("Wire refunds cost $30 and take 10 days.", (0,))))
    assert outcome.blocked
    assert not any(c.verified for c in outcome.ledger)


def test_a_non_canonical_passage_backs_nothing() -> None:
    outcome = check_policy_claims(reply(Sentence("The domestic wire fee is $5.", (0,)), sources=(FORUM,)))
    assert outcome.blocked
    assert outcome.parts.answer == ()
    assert "$5" in outcome.block_reason


def test_only_the_cited_passage_counts() -> None:
    # $1,500 is in PERKS, which this sentence does not cite.
    outcome = check_policy_claims(
        reply(Sentence("The mobile check deposit daily limit is $1,500.", (0,)), sources=(WIRES, PERKS))
    )
    assert outcome.blocked
    cited = check_policy_claims(
        reply(Sentence("The mobile check deposit daily limit is $1,500.", (1,)), sources=(WIRES, PERKS))
    )
    assert not cited.blocked and cited.ledger[0].verified


def test_the_same_number_in_an_unrelated_line_does_not_verify() -> None:
    # PERKS says "$10.00" only about a graduation bonus.
    outcome = check_policy_claims(reply(Sentence("The overdraft fee is $10.00.", (0,)), sources=(PERKS,)))
    assert not outcome.ledger[0].verified


def test_blocked_when_more_than_half_of_the_answer_goes() -> None:
    outcome = check_policy_claims(
        reply(
            Sentence("A domestic outgoing wire costs $10.00.", (0,)),
            Sentence("The fee is waived after 3 wires.", (0,)),
            Sentence("Premium clients pay 2%.", (0,)),
        )
    )
    assert outcome.blocked
    assert "3 wires" in outcome.block_reason and "2%" in outcome.block_reason


def test_template_lines_are_checked_too() -> None:
    outcome = check_policy_claims(
        reply(
            Sentence("A domestic outgoing wire costs $10.00.", (0,)),
            next_step="We always reply within 24 hours.",
            uncertainties=("Processing usually takes 2 business days.",),
        )
    )
    assert outcome.parts.next_step == ""
    assert outcome.parts.uncertainties == ()
    assert not outcome.blocked  # the answer itself stands
    assert sum(not c.verified for c in outcome.ledger) == 2


def test_the_customers_own_identifiers_are_not_claims_but_invented_contacts_are() -> None:
    own = check_policy_claims(
        reply(Sentence("We will call you back on +44 20 7946 0958 about the wire.", (0,))),
        customer_text="Please call me on +44 20 7946 0958",
    )
    assert own.ledger == ()
    invented = check_policy_claims(reply(Sentence("Call our wire desk on +44 20 7946 0000.", (0,))))
    assert [c.kind for c in invented.ledger] == ["contact"]
    assert invented.blocked


def test_an_uncited_sentence_is_checked_against_every_source() -> None:
    outcome = check_policy_claims(reply(Sentence("The mobile check deposit daily limit is $1,500."), sources=(WIRES, PERKS)))
    assert outcome.ledger[0].verified and outcome.ledger[0].article_id == "dark_green_001"


def test_passage_backing_is_the_ledger_seen_from_one_passage() -> None:
    wires, forum = PassageBacking(WIRES), PassageBacking(FORUM)
    assert wires.backs("Domestic outgoing wire: $10.00 per transfer.")
    assert not forum.backs("Domestic outgoing wire: $10.00 per transfer.")
    assert not forum.backs("Someone told me the domestic wire fee is $5.")
    assert forum.backs("No numbers here at all.")


def test_a_named_product_must_be_named_by_the_backing_passage() -> None:
    # WIRES is about Lime Green; the same $10.00 does not make a Navy Blue claim true.
    outcome = check_policy_claims(reply(Sentence("On Navy Blue a domestic outgoing wire costs $10.00.", (0,))))
    assert not outcome.ledger[0].verified
    ok = check_policy_claims(reply(Sentence("On Lime Green a domestic outgoing wire costs $10.00.", (0,))))
    assert ok.ledger[0].verified
    brand = check_policy_claims(
        reply(Sentence("At Rho-Bank a domestic outgoing wire costs $10.00.", (0,)), closing="Kind regards,\nRho-Bank Support")
    )
    assert brand.ledger[0].verified  # the tenant's own name is not a product


def test_every_kind_comes_from_the_fixed_set() -> None:
    text = (
        "Fee $5. Limit up to $900. Rate 3% APY. Age 18+. Within 5 days, 3 hours, 2 weeks. Support 24/7 "
        "until 5 PM. On March 3. Earn 2x. Call 1-800-555-0199. Warranty 2 years. Up to 4 cards. Pay $20."
    )
    passage = tk.EvidencePassage(article_id="all", text=text, is_policy=True)
    outcome = check_policy_claims(reply(*(Sentence(s, (0,)) for s in text.split(". ")), sources=(passage,)))
    assert outcome.ledger and {c.kind for c in outcome.ledger} <= set(CLAIM_KINDS)
    assert all(c.verified for c in outcome.ledger)
