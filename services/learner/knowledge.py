"""The knowledge loop: what resolved tickets teach the knowledge base. Pure: no Kafka here.

- Every resolution that carries notes becomes a `TicketResolved` (problem statement, notes, intent,
  cited articles) for the retriever's similar-cases index.
- A resolution the KB did not back (the retriever reported a gap for the ticket, or the agent
  cited no article) joins the gap group of its topic (tenant and intent). When a group reaches
  `proposal_min_tickets`, one `KbProposal` is emitted for it: a draft article (title, body from the
  problem statements and the agents' resolution notes, source tickets). Ten tickets about one gap
  make one proposal, not ten; the proposal id is derived from the topic, so a replay re-derives it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from conversation.summary import conversation_summary
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, new_meta
from supportflow.topics import Topic

from services.learner.config import KnowledgeConfig
from services.learner.entries import EntryMap
from services.learner.state import listed

PRODUCER = "learner"
MAX_EXAMPLES = 5  # problem statements and resolution notes quoted in a proposal
MAX_PROBLEM_CHARS = 600


@dataclass
class _GapGroup:
    tickets: dict[str, tuple[str, str]] = field(default_factory=dict)  # ticket id -> (problem, notes)
    proposed: bool = False


@dataclass(frozen=True)
class CaseFacts:
    """What the loop remembers of a decided ticket until it is resolved."""

    intent: str
    problem_statement: str


def _case_from_state(values: object) -> CaseFacts:
    intent, problem = listed(values)
    return CaseFacts(str(intent), str(problem))


def _group_state(group: _GapGroup) -> list:
    return [group.proposed, [[ticket_id, problem, notes] for ticket_id, (problem, notes) in group.tickets.items()]]


def _group_from_state(values: object) -> _GapGroup:
    proposed, tickets = listed(values)
    return _GapGroup({str(ticket_id): (str(problem), str(notes)) for ticket_id, problem, notes in listed(tickets)},
                     bool(proposed))


def topic_title(intent: str) -> str:
    words = intent.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "Unclassified questions"


class KnowledgeLoop:
    def __init__(self, config: KnowledgeConfig, max_tickets: int) -> None:
        self._config = config
        self._max_tickets = max_tickets
        # (tenant, ticket id) -> what the ticket opened with; the oldest forgotten first
        self._cases: EntryMap[tuple[str, str], CaseFacts] = EntryMap(
            "case", lambda facts: [facts.intent, facts.problem_statement], _case_from_state)
        # (tenant, intent) -> the unbacked resolutions of that topic
        self._groups: EntryMap[tuple[str, str], _GapGroup] = EntryMap("gap-group", _group_state, _group_from_state)

    def entry_maps(self) -> list[EntryMap]:
        return [self._cases, self._groups]

    def remember(self, event: ev.TicketDecided) -> None:
        """The case a ticket opened with: a later decision on the same ticket (the customer's reply,
        classified again) does not change what the ticket was about."""
        tenant = event.ticket.tenant_id or event.meta.tenant_id
        if (tenant, event.ticket.ticket_id) in self._cases:
            return
        # The escalation packet's summary, or the same summary made here for a ticket decided
        # without a packet: greetings, sign-offs and a subject that says nothing ("Help request") left out.
        problem = event.packet.conversation_summary or conversation_summary(event.ticket)
        problem = _one_line(problem, MAX_PROBLEM_CHARS)
        self._cases[(tenant, event.ticket.ticket_id)] = CaseFacts(event.classification.intent, problem)
        while len(self._cases) > self._max_tickets:
            self._cases.popitem(last=False)

    def on_resolution(self, tenant: str, ticket_id: str, resolution: ev.Resolution, *, kb_gap: bool) -> list[Emit]:
        """A resolved ticket whose decision is known: index it, and count it against its gap topic."""
        facts = self._cases.get((tenant, ticket_id))
        notes = resolution.resolution_notes.strip()
        if facts is None or not notes:
            return []
        emits = [Emit(Topic.TICKETS_RESOLVED, ticket_id, ev.TicketResolved(
            meta=new_meta(tenant, PRODUCER), ticket_id=ticket_id, problem_statement=facts.problem_statement,
            resolution_notes=notes, intent=facts.intent, article_ids=list(resolution.cited_article_ids),
        ))]
        if kb_gap or not resolution.cited_article_ids:
            group = self._groups.get((tenant, facts.intent))
            if group is None:
                group = self._groups[(tenant, facts.intent)] = _GapGroup()
            if group.proposed:  # one proposal per topic; later tickets are the reviewers' business
                return emits
            group.tickets[ticket_id] = (facts.problem_statement, notes)
            self._groups.touch((tenant, facts.intent))
            if len(group.tickets) >= self._config.proposal_min_tickets:
                group.proposed = True
                emits.append(Emit(Topic.KB_PROPOSALS, facts.intent, proposal(tenant, facts.intent, group.tickets)))
        return emits

    def open_gap_topics(self) -> int:
        """Topics with unbacked resolutions that have not reached a proposal yet."""
        return sum(1 for group in self._groups.values() if not group.proposed)


def proposal(tenant: str, intent: str, tickets: dict[str, tuple[str, str]]) -> ev.KbProposal:
    """A draft article for a knowledge gap, written from the tickets that revealed it."""
    title = topic_title(intent)
    problems = list(dict.fromkeys(problem for problem, _ in tickets.values() if problem))[:MAX_EXAMPLES]
    notes = list(dict.fromkeys(note for _, note in tickets.values()))[:MAX_EXAMPLES]
    body = "\n".join(
        [f"# {title}", "", "Draft proposed by Supportflow's learner: the knowledge base had no article that "
         f"answered these {len(tickets)} tickets, so agents answered them on their own. Review, merge "
         "the answers into one, and publish.", "", "## What customers asked", ""]
        + [f"- {_one_line(problem)}" for problem in problems]
        + ["", "## How agents resolved it", ""]
        + [f"- {_one_line(note)}" for note in notes]
    )
    return ev.KbProposal(
        meta=new_meta(tenant, PRODUCER),
        proposal_id=uuid.uuid5(uuid.NAMESPACE_URL, f"supportflow:kb-proposal:{tenant}:{intent}").hex,
        topic=intent,
        title=title,
        body=body,
        source_ticket_ids=list(tickets),
    )


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
