"""The escalator's memory of tickets it answered automatically: later messages under an answered
id are writing back; the answered message delivered again, another tenant, or an answer older than
the memory are not."""

from __future__ import annotations

import pytest

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.escalator.answered import AnsweredTickets

T0 = 1_700_000_000.0
DAY = 86_400.0


def message(ticket_id: str = "t-1", body: str = "Where is my card?", received: int = int(T0)) -> tk.Ticket:
    ticket = tk.Ticket(ticket_id=ticket_id, body=body)
    ticket.received_at.seconds = received
    return ticket


def test_a_later_message_under_an_answered_id_is_writing_back() -> None:
    answered = AnsweredTickets(memory_s=7 * DAY)
    answered.record("rho", message(), T0 + 1)
    assert answered.wrote_back("rho", message(body="That did not help", received=int(T0) + 60), T0 + 60)
    assert answered.wrote_back("rho", message(received=int(T0) + 60), T0 + 60)  # same words, a new message
    assert not answered.wrote_back("rho", message(), T0 + 60)  # the answered message, delivered again
    assert not answered.wrote_back("other", message(body="That did not help"), T0 + 60)
    assert not answered.wrote_back("rho", message("t-2", body="That did not help"), T0 + 60)


def test_answers_older_than_the_memory_are_forgotten() -> None:
    answered = AnsweredTickets(memory_s=DAY)
    answered.record("rho", message("old"), T0)
    answered.record("rho", message("new"), T0 + DAY)
    later = T0 + DAY + 10
    assert not answered.wrote_back("rho", message("old", body="hello?"), later)
    assert answered.wrote_back("rho", message("new", body="hello?"), later)
    assert len(answered) == 1


def test_an_older_answer_recorded_after_a_newer_one_is_still_judged_by_its_own_time() -> None:
    answered = AnsweredTickets(memory_s=DAY)
    answered.record("rho", message("newer"), T0 + DAY)  # a replay reads partitions one after another
    answered.record("rho", message("older"), T0)
    assert not answered.wrote_back("rho", message("older", body="hello?"), T0 + DAY + 10)


def test_the_memory_is_bounded_and_can_be_switched_off() -> None:
    bounded = AnsweredTickets(memory_s=DAY, max_tickets=2)
    for name in ("a", "b", "c"):
        bounded.record("rho", message(name), T0)
    assert len(bounded) == 2 and not bounded.wrote_back("rho", message("a", body="?"), T0 + 1)
    off = AnsweredTickets(memory_s=0)
    off.record("rho", message(), T0)
    assert len(off) == 0 and not off.wrote_back("rho", message(body="?"), T0 + 1)
    with pytest.raises(ValueError):
        AnsweredTickets(memory_s=-1)
