"""Whether a question asks how to do something, and whether a passage tells how: the offline
drafter's check against replies that say what happens around an action instead of how to do it."""

from __future__ import annotations

import pytest

from services.drafter.howto import asked_action, tells_how


@pytest.mark.parametrize(
    "question, action",
    [
        ("How do I go about ordering a new bank card?", "ordering"),
        ("How can I reset my PIN?", "reset"),
        ("how to close my account", "close"),
        ("Can someone assist me with activating my new card?", "activating"),
        ("What are the steps to dispute a charge?", "dispute"),
        ("How do I get a refund?", None),  # too general a verb to check
        ("Where is my card?", None),
        ("How much is a wire?", None),  # a figure, not an action
        ("How long does it take?", None),
    ],
)
def test_the_action_a_question_asks_how_to_do(question: str, action: str | None) -> None:
    assert asked_action(question) == action


@pytest.mark.parametrize(
    "text",
    [
        "Order a replacement card in the app.",
        "You can order a new card by calling us.",
        "Cards can be ordered online.",
        "To order a card, go to Cards.",
        "- Tap Cards, then order a new one.",
    ],
)
def test_a_passage_that_tells_how(text: str) -> None:
    assert tells_how(text, "order")


@pytest.mark.parametrize(
    "text",
    [
        "- Update any saved card details with merchants after you receive the new card.",
        "You receive an email when your replacement order is placed.",
        "Orders placed after 5 pm ship the next day.",
        "The card arrives in 5 to 7 business days.",
    ],
)
def test_a_passage_that_only_speaks_around_the_action(text: str) -> None:
    assert not tells_how(text, "order")


@pytest.mark.parametrize(
    "text, action, told",
    [
        ("Activate your card in the app.", "activating", True),
        ("A new card may need activating before use.", "activating", False),
        ("You can close your account by calling us.", "close", True),
        ("Closed accounts cannot be reopened.", "close", False),
        ("Disputes can be filed by disputing the charge in the app.", "dispute", True),
    ],
)
def test_any_form_of_the_asked_verb_counts_only_as_an_instruction(text: str, action: str, told: bool) -> None:
    assert tells_how(text, action) is told


def test_verbs_ending_in_y_and_instructions_on_their_own_line() -> None:
    assert tells_how("Your identity can be verified in the app.", "verify")
    assert tells_how("Your details\nVerify your identity in the app", "verifying")
    assert not tells_how("We verified your identity last week.", "verify")
