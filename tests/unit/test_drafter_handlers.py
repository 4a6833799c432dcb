"""The tickets.classified consumer handler: which tickets are drafted, what is asked of the
retriever, what is emitted."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import InvalidEvent, TransientError
from supportflow.topics import Topic

from services.drafter.handlers import TicketDrafter
from services.drafter.offline import OfflineDrafter
from services.drafter.templates import TemplateBook

WIRES = tk.EvidencePassage(
    article_id="lime_green_004", chunk_id="lime_green_004#0", title="Lime Green Account: Wire Transfer Pricing",
    section="Outgoing wire fees", is_policy=True, score=0.8,
    text="- Domestic outgoing wire: $10.00 per transfer.\n- International outgoing wire: $25.00 per transfer.",
)


class RecordingSearch:
    def __init__(self, response: svc.SearchResponse | Exception) -> None:
        self.response = response
        self.requests: list[svc.SearchRequest] = []

    def __call__(self, request: svc.SearchRequest) -> svc.SearchResponse:
        self.requests.append(request)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


def stamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def classified(route: int = tk.ROUTE_AUTO_RESPOND, *, problem: str = "What does a domestic outgoing wire cost?") -> ev.TicketClassified:
    event = ev.TicketClassified(
        meta=ev.EventMeta(event_id="e-1", tenant_id="rho-bank"),
        ticket=tk.Ticket(ticket_id="tkt-42", tenant_id="rho-bank", channel=tk.CHANNEL_EMAIL, subject="Wire", body="How much is a wire?"),
        normalized=tk.NormalizedTicket(problem_statement=problem),
        classification=tk.Classification(intent="transfer_fee_charged", confidence=0.91, route=route),
    )
    event.timeline.received_at.CopyFrom(stamp(100))
    event.timeline.classified_at.CopyFrom(stamp(101))
    return event


def handler(search: RecordingSearch) -> TicketDrafter:
    clock = iter([stamp(102), stamp(103)])
    return TicketDrafter(search, OfflineDrafter(TemplateBook.load()), k=3, clock=lambda: next(clock))


@pytest.mark.parametrize("route", [tk.ROUTE_ESCALATE, tk.ROUTE_ASK_FOLLOW_UP, tk.ROUTE_UNSPECIFIED])
def test_routes_without_an_ai_draft_are_ignored(route: int) -> None:
    search = RecordingSearch(svc.SearchResponse(passages=[WIRES]))
    assert handler(search).handle_classified(classified(route)) == []
    assert search.requests == []


def test_a_drafted_ticket_is_emitted_keyed_by_ticket_with_its_timeline() -> None:
    search = RecordingSearch(svc.SearchResponse(passages=[WIRES], best_score=0.8))
    [emit] = handler(search).handle_classified(classified(tk.ROUTE_DRAFT_FOR_REVIEW))

    assert emit.topic is Topic.TICKETS_DRAFTED and emit.key == "tkt-42"
    drafted = emit.event
    assert isinstance(drafted, ev.TicketDrafted)
    assert drafted.meta.tenant_id == "rho-bank" and drafted.meta.producer == "drafter" and drafted.meta.event_id
    assert drafted.draft.status == tk.DRAFT_STATUS_READY
    assert "$10.00" in drafted.draft.text
    assert [p.article_id for p in drafted.evidence] == ["lime_green_004"]
    assert drafted.classification.intent == "transfer_fee_charged"
    assert drafted.normalized.problem_statement.startswith("What does")
    timeline = drafted.timeline
    assert (timeline.received_at.seconds, timeline.classified_at.seconds) == (100, 101)
    assert (timeline.evidence_at.seconds, timeline.drafted_at.seconds) == (102, 103)

    [request] = search.requests
    assert request.tenant_id == "rho-bank" and request.ticket_id == "tkt-42"
    assert request.query == "What does a domestic outgoing wire cost?"
    assert request.intent == "transfer_fee_charged" and request.k == 3


def test_the_query_falls_back_to_subject_and_body() -> None:
    search = RecordingSearch(svc.SearchResponse(passages=[WIRES]))
    handler(search).handle_classified(classified(problem=""))
    assert search.requests[0].query == "Wire\nHow much is a wire?"


def test_a_gap_gives_a_holding_reply_but_keeps_the_passages_for_the_agent() -> None:
    search = RecordingSearch(svc.SearchResponse(passages=[WIRES], gap=True, best_score=0.1))
    [emit] = handler(search).handle_classified(classified())
    assert emit.event.draft.status == tk.DRAFT_STATUS_NO_EVIDENCE
    assert "$10.00" not in emit.event.draft.text
    assert len(emit.event.evidence) == 1


def test_the_tenant_falls_back_to_the_event_meta() -> None:
    event = classified()
    event.ticket.tenant_id = ""
    search = RecordingSearch(svc.SearchResponse(passages=[WIRES]))
    [emit] = handler(search).handle_classified(event)
    assert emit.event.ticket.tenant_id == "rho-bank" and search.requests[0].tenant_id == "rho-bank"
    event.meta.tenant_id = ""
    with pytest.raises(InvalidEvent, match="tenant"):
        handler(search).handle_classified(event)


def test_bad_events_are_invalid() -> None:
    search = RecordingSearch(svc.SearchResponse(passages=[WIRES]))
    with pytest.raises(InvalidEvent):
        handler(search).handle_classified(ev.TicketClassified(meta=ev.EventMeta(event_id="e")))
    empty = classified(problem="")
    empty.ticket.subject = empty.ticket.body = ""
    with pytest.raises(InvalidEvent, match="problem statement"):
        handler(search).handle_classified(empty)


def test_a_retriever_outage_is_transient() -> None:
    search = RecordingSearch(TransientError("retriever UNAVAILABLE"))
    with pytest.raises(TransientError):
        handler(search).handle_classified(classified())


def test_executed_actions_are_looked_up_per_ticket() -> None:
    asked: list[str] = []

    def executed(ticket_id: str) -> frozenset[str]:
        asked.append(ticket_id)
        return frozenset()

    drafter = TicketDrafter(RecordingSearch(svc.SearchResponse(passages=[WIRES])), OfflineDrafter(TemplateBook.load()), executed_actions=executed)
    drafter.handle_classified(classified())
    assert asked == ["tkt-42"]


class JudgingGenerator:
    """The offline drafter's reply, judged as a model would judge it (the Claude path's field)."""

    name = "judge"

    def __init__(self, answerability: int) -> None:
        self._offline = OfflineDrafter(TemplateBook.load())
        self._answerability = answerability

    def generate(self, request):  # type: ignore[no-untyped-def]
        return self._offline.generate(request).replace(answerability=self._answerability)


@pytest.mark.parametrize("answerability", [tk.ANSWERABILITY_ANSWERED, tk.ANSWERABILITY_NOT_ANSWERED])
def test_passages_judged_off_the_question_are_reported_as_a_knowledge_gap(answerability: int) -> None:
    search = RecordingSearch(svc.SearchResponse(passages=[WIRES], best_score=0.8))
    drafter = TicketDrafter(search, JudgingGenerator(answerability), k=3)
    emits = drafter.handle_classified(classified())
    assert emits[0].topic is Topic.TICKETS_DRAFTED
    assert emits[0].event.draft.answerability == answerability
    gaps = [emit for emit in emits if emit.topic is Topic.KB_GAPS]
    if answerability == tk.ANSWERABILITY_ANSWERED:
        assert gaps == []
        return
    [gap] = gaps
    assert gap.key == "tkt-42"
    assert isinstance(gap.event, ev.KbGapDetected)
    assert (gap.event.ticket_id, gap.event.intent, gap.event.best_score) == ("tkt-42", "transfer_fee_charged", 0.8)
    assert gap.event.query == "What does a domestic outgoing wire cost?"
    assert gap.event.meta.tenant_id == "rho-bank" and gap.event.meta.producer == "drafter"


class PolicyAwareSearch(RecordingSearch):
    """The retriever: the search finds a focused article that repeats the policy's figure and,
    asked `with_policy`, adds the policy article when the passages hold no canonical one."""

    def __init__(self, ordinary: svc.SearchResponse, policy: svc.SearchResponse) -> None:
        super().__init__(ordinary)
        self.policy = policy

    def __call__(self, request: svc.SearchRequest) -> svc.SearchResponse:
        self.requests.append(request)
        response = svc.SearchResponse()
        response.CopyFrom(self.response)
        if request.with_policy and not any(p.is_policy for p in response.passages):
            response.policy.extend(self.policy.passages)
        return response


FOCUSED = tk.EvidencePassage(
    article_id="wire-howto", chunk_id="wire-howto#0", title="Sending a wire", is_policy=False, score=0.9,
    text="A domestic outgoing wire costs $10.00 per transfer. Send it from Transfers > Wire.")


HOWTO = tk.EvidencePassage(
    article_id="wire-steps", chunk_id="wire-steps#0", title="Sending a wire", is_policy=False, score=0.9,
    text="Send a wire from Transfers > Wire and confirm it in the app.")


@pytest.mark.parametrize("problem, passages, fetched", [
    ("How much does a domestic outgoing wire cost?", [FOCUSED], True),  # a figure asked, nothing canonical found
    ("How do I send a wire?", [FOCUSED], True),  # the focused article repeats a figure it cannot back
    ("How do I send a wire?", [HOWTO], False),   # no figure asked, none stated
    ("How much does a domestic outgoing wire cost?", [FOCUSED, WIRES], False),  # the policy is already there
])
def test_the_policy_article_is_kept_when_a_figure_is_asked_for_or_repeated_without_it(
        problem, passages, fetched) -> None:
    search = PolicyAwareSearch(svc.SearchResponse(passages=passages), svc.SearchResponse(passages=[WIRES]))
    [emit] = handler(search).handle_classified(classified(problem=problem))
    assert len(search.requests) == 1 and search.requests[0].with_policy  # one search, one encoding
    assert ("lime_green_004" in {p.article_id for p in emit.event.evidence}) == (fetched or WIRES in passages)
    if fetched:
        assert [p.article_id for p in emit.event.evidence] == ["wire-howto", "lime_green_004"]
        assert "$10.00" in emit.event.draft.text  # the focused article's figure, backed by the policy
        assert {c.article_id for c in emit.event.draft.citations} == {"wire-howto", "lime_green_004"}


DECLINED = tk.EvidencePassage(
    article_id="declined", chunk_id="declined#1", title="Why was my cash withdrawal declined?",
    section="Other reasons", score=0.9, intents=["declined_cash_withdrawal"],
    text="- A PIN is blocked after 3 wrong attempts in a row.\n"
         "- The ATM has its own limit per withdrawal, which can be lower than yours.\n"
         "- The ATM does not accept Mastercard, or has a fault.")
TIMINGS = tk.EvidencePassage(
    article_id="fees", chunk_id="fees#3", title="Fees, limits and timings", section="Payments and refunds",
    is_policy=True, score=0.88,
    text="- Refunds usually appear within 5 working days of the merchant sending them.\n"
         "- PIN attempts before the PIN is blocked: 3.\n- Pending cash withdrawals: up to 2 working days.")


@pytest.mark.parametrize("problem, quoted", [
    ("I could not get the ATM to work", False),  # fetched to back "3 wrong attempts" only
    ("How long are cash withdrawals pending?", True),  # a figure asked for: the policy answers it
])
def test_a_policy_article_fetched_only_to_back_a_figure_is_not_quoted_on_its_own(problem, quoted) -> None:
    search = PolicyAwareSearch(svc.SearchResponse(passages=[DECLINED]), svc.SearchResponse(passages=[TIMINGS]))
    request = classified(problem=problem)
    request.classification.intent = "declined_cash_withdrawal"
    [emit] = handler(search).handle_classified(request)
    assert "fees" in {p.article_id for p in emit.event.evidence}
    assert ("up to 2 working days" in emit.event.draft.text) == quoted
    assert "Refunds usually appear" not in emit.event.draft.text
