"""Which way a text moves money: the offline drafter's check against sending-for-receiving replies."""

from __future__ import annotations

import pytest

from services.drafter.money_direction import Direction, money_direction

INCOMING, OUTGOING = Direction.INCOMING, Direction.OUTGOING


@pytest.mark.parametrize(
    "text, direction",
    [
        ("What is the charge for receiving a SEPA transfer?", INCOMING),
        ("How long does it take for a transfer to reach my account?", INCOMING),
        ("How do I top up my account with cash?", INCOMING),
        ("My friend sent me money, where is it?", INCOMING),
        ("- You receive up to 10 incoming domestic wires per monthly cycle at no charge.", INCOMING),
        ("Outgoing SEPA wires are $5.00 each", OUTGOING),
        ("Transfers to external banks typically complete in 2 business days", OUTGOING),
        ("I want to send money abroad", OUTGOING),
        ("How much can I withdraw in one month without fees?", OUTGOING),
        # No money moves: a card is received or sent, which is no payment direction.
        ("Why have I not received my new card yet?", None),
        ("Cards are sent within 5 business days.", None),
        # Both ways: the whole journey, not one side of it.
        ("I sent money to my friend but it was never received", None),
        ("The seller hasn't received my payment yet", None),  # someone else receiving: I sent it
        ("I did not receive the right amount of cash from the ATM", None),
        ("I received an error message saying my transfer is not possible", None),
        ("Can I pay my rent in bitcoin?", None),
    ],
)
def test_direction(text: str, direction: Direction | None) -> None:
    assert money_direction(text) is direction
