"""Whether a question waits for something, and whether a passage speaks of arrival: the offline
drafter's check against how-to replies to customers who are waiting."""

from __future__ import annotations

import pytest

from services.drafter.arrival import awaits_arrival, speaks_of_arrival


@pytest.mark.parametrize(
    "text",
    [
        "Why have I not received a virtual card yet?",
        "My card still hasn't arrived after two weeks",
        "I am yet to receive my PIN.",
        "My top-up is still pending, what is happening?",
        "I have been waiting for my refund for a week",
        "Where is my money?",
        "When will my new card arrive?",
        "The transfer I made to my friend still hasn't shown up",
        "Why is my cash withdrawal pending?",
        "How long will my transfer stay pending?",
        "What is the status of my card's delivery?",
        "I made a bank transfer and the balance hasn't updated yet.",
        "My top up has not gone through",
        "I am not seeing the cash I deposited in my balance",
    ],
)
def test_a_customer_waiting_for_something(text: str) -> None:
    assert awaits_arrival(text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I create a virtual card?",
        "Where is the top-up verification code located?",
        "Where is the nearest ATM?",
        "My transfer didn't go through",  # failed, not on its way
        "I did not receive the right amount of cash from the ATM",  # short, not late
        "My package hasn't arrived and I want a refund",  # a merchant's goods: a refund question
        "What does a domestic wire cost?",
        "I haven't been able to complete any transactions on my card today.",  # failing, not late
        "My payment wouldn't go through at the shop",
        "I can not find my phone",
        "Why is my transfer fee so high?",
    ],
)
def test_a_customer_not_waiting(text: str) -> None:
    assert not awaits_arrival(text)


@pytest.mark.parametrize(
    "text, speaks",
    [
        ("Cards are delivered within 7 to 10 business days.", True),
        ("Virtual cards are issued instantly in the app.", True),
        ("Transfers may show as pending while they are processed.", True),
        ("If your card was lost in the mail, order a replacement.", True),
        ("Go to Cards in your dashboard and select Virtual.", False),
        ("Choose Create new card.", False),
    ],
)
def test_passages_that_speak_of_arrival(text: str, speaks: bool) -> None:
    assert speaks_of_arrival(text) is speaks
