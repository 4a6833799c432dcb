"""The drafter's handlers: evidence from the retriever and from the tenant's systems (the
investigator), then a guarded draft. No Kafka or gRPC here: `search` and `investigate` are injected
(main.py passes gRPC stub calls with deadlines: the retriever's raises TransientError when it is
unavailable; the investigator's never raises, an unavailable one gives an investigation with no
findings and the reason among its uncertainties), and `main.py` / `servicer.py` adapt these to the
consumer loop and the `Draft` RPC.

Every ticket is investigated: whether a playbook applies (and which lookups it runs) is the
investigator's call, from the tenant's playbooks, so an empty investigation is a normal answer.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import Emit, InvalidEvent, new_meta, ticket_with_tenant
from supportflow.investigation import Investigate, no_investigation
from supportflow.topics import Topic

from services.drafter.answer_checks import MissingFigureCheck
from services.drafter.drafting import draft_reply
from services.drafter.passage_units import passage_units
from services.drafter.policy_ledger import PassageBacking
from services.drafter.reply import ReplyGenerator

SERVICE = "drafter"
DRAFTED_ROUTES = frozenset({tk.ROUTE_AUTO_RESPOND, tk.ROUTE_DRAFT_FOR_REVIEW})
DEFAULT_EVIDENCE_K = 4  # distinct articles asked of the retriever
MAX_QUERY_CHARS = 2000

Search = Callable[[svc.SearchRequest], svc.SearchResponse]
ExecutedActions = Callable[[str], frozenset[str]]


def no_executed_actions(_ticket_id: str) -> frozenset[str]:
    return frozenset()


def evidence_query(ticket: tk.Ticket, normalized: tk.NormalizedTicket) -> str:
    """The classifier's problem statement, or the raw subject and body when there is none."""
    query = normalized.problem_statement.strip() or f"{ticket.subject}\n{ticket.body}".strip()
    return query[:MAX_QUERY_CHARS]


def states_unbacked_figure(passages: list[tk.EvidencePassage]) -> bool:
    """Whether a passage states a figure (a fee, a limit, a time) that it cannot back itself: a
    focused article repeating the tenant's canonical policy article, quotable only beside it."""
    return any(not passage.is_policy and _states_unbacked_figure(passage.title, passage.section, passage.text)
               for passage in passages)


@functools.lru_cache(maxsize=4096)
def _states_unbacked_figure(title: str, section: str, text: str) -> bool:
    # The same help-center passages come back ticket after ticket: each is read once.
    passage = tk.EvidencePassage(title=title, section=section, text=text)
    backing = PassageBacking(passage)
    return not all(backing.backs(unit.text) for unit in passage_units(passage, 0))


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


@dataclass(frozen=True)
class DraftOutcome:
    draft: tk.Draft
    evidence: list[tk.EvidencePassage]  # everything the retriever returned, for the reviewer
    evidence_at: Timestamp
    drafted_at: Timestamp
    query: str  # what the retriever was asked
    best_score: float  # the retriever's gap signal for that query
    investigation: ev.Investigation  # what the tenant's systems showed (empty: no playbook applied)
    normalized: tk.NormalizedTicket  # the classifier's, with the identifiers the investigation pinned


def with_pinned_identifiers(normalized: tk.NormalizedTicket, investigation: ev.Investigation) -> tk.NormalizedTicket:
    """The ticket as the investigation left it: the identifiers it pinned added, and nothing left to
    ask for when one of them is among the missing. The classifier lists every kind of an unmet
    requirement group, any one of which meets it; the shipped catalogs' intents each need one
    record (one group), which the pinned record is. (An intent needing two records would need
    its groups on the event to be told apart.)"""
    if not investigation.identified:
        return normalized
    updated = tk.NormalizedTicket()
    updated.CopyFrom(normalized)
    present = {(i.kind, i.value) for i in normalized.identifiers}
    updated.identifiers.extend(i for i in investigation.identified if (i.kind, i.value) not in present)
    if {i.kind for i in investigation.identified} & set(normalized.missing_identifiers):
        del updated.missing_identifiers[:]
    return updated


class TicketDrafter:
    """Fetch evidence for a ticket and draft a reply: what the consumer and the Draft RPC share."""

    def __init__(
        self,
        search: Search,
        generator: ReplyGenerator,
        *,
        k: int = DEFAULT_EVIDENCE_K,
        executed_actions: ExecutedActions = no_executed_actions,
        investigate: Investigate = no_investigation,
        clock: Callable[[], Timestamp] = _now,
    ) -> None:
        self._search = search
        self._investigate = investigate
        self._generator = generator
        self._k = k
        self._executed_actions = executed_actions
        self._clock = clock

    def draft(self, ticket: tk.Ticket, normalized: tk.NormalizedTicket, classification: tk.Classification) -> DraftOutcome:
        query = evidence_query(ticket, normalized)
        if not query:
            raise InvalidEvent("ticket has neither a problem statement nor a subject or body")
        response = self._search(
            svc.SearchRequest(
                tenant_id=ticket.tenant_id,
                query=query,
                k=self._k,
                intent=classification.intent,
                ticket_id=ticket.ticket_id,
                with_policy=True,
            )
        )
        passages = list(response.passages)
        backing_only: frozenset[int] = frozenset()
        if not response.gap and response.policy:
            # A figure is verified only against a canonical passage: the tenant's policy article
            # (which the retriever adds when the passages hold none) is kept when the question asks
            # how much or how long, to be quoted, or when a passage repeats one of its figures, to
            # back that figure without being quoted on its own.
            known = {p.chunk_id for p in passages}
            fetched = [p for p in response.policy if p.chunk_id not in known]
            if MissingFigureCheck.asks_for_figure(query):
                passages += fetched
            elif states_unbacked_figure(passages):
                backing_only = frozenset(range(len(passages), len(passages) + len(fetched)))
                passages += fetched
        investigation = self._investigate(
            svc.InvestigateRequest(ticket=ticket, normalized=normalized, classification=classification)
        )
        normalized = with_pinned_identifiers(normalized, investigation)
        evidence_at = self._clock()
        # Under the gap threshold the passages are the best of a bad lot: quoting them would answer
        # a question nobody asked, so the reply holds instead (the passages still go to the agent).
        usable = [] if response.gap else passages
        draft = draft_reply(
            ticket,
            normalized,
            classification,
            usable,
            generator=self._generator,
            executed_actions=self._executed_actions(ticket.ticket_id),
            investigation=investigation,
            backing_only=backing_only,
        )
        return DraftOutcome(draft, passages, evidence_at, self._clock(), query, response.best_score,
                            investigation, normalized)

    def handle_classified(self, event: ev.TicketClassified) -> list[Emit]:
        """tickets.classified -> tickets.drafted, for the routes that get an AI draft."""
        if not event.HasField("ticket") or not event.ticket.ticket_id:
            raise InvalidEvent("classified event has no ticket id")
        if event.classification.route not in DRAFTED_ROUTES:
            return []
        ticket = ticket_with_tenant(event.ticket, event.meta)
        tenant = ticket.tenant_id
        outcome = self.draft(ticket, event.normalized, event.classification)
        drafted = ev.TicketDrafted(
            meta=new_meta(tenant, SERVICE),
            ticket=ticket,
            normalized=outcome.normalized,
            classification=event.classification,
            draft=outcome.draft,
            evidence=outcome.evidence,
            timeline=event.timeline,
            investigation=outcome.investigation,
        )
        drafted.timeline.evidence_at.CopyFrom(outcome.evidence_at)
        drafted.timeline.drafted_at.CopyFrom(outcome.drafted_at)
        emits = [Emit(Topic.TICKETS_DRAFTED, ticket.ticket_id, drafted)]
        if outcome.draft.answerability == tk.ANSWERABILITY_NOT_ANSWERED:
            # Passages close enough to pass the retriever's gap threshold that still do not answer
            # the question are a knowledge gap too: the learner proposes an article from how the
            # agent resolves the ticket.
            gap = ev.KbGapDetected(
                meta=new_meta(tenant, SERVICE), ticket_id=ticket.ticket_id, query=outcome.query,
                intent=event.classification.intent, best_score=outcome.best_score,
            )
            emits.append(Emit(Topic.KB_GAPS, ticket.ticket_id, gap))
        return emits
