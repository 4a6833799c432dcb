"""Drafting a reply, end to end and pure: generator -> overreach guard -> evidence check ->
policy ledger -> status.

Whatever the generator (the extractive offline drafter or Claude), its reply passes the same three
guards in the same order: action claims are rewritten first (so "I've refunded your $20" becomes a
proposal and never reaches the ledger as a fee), then every account fact stated from the
investigation must be carried by one of its findings, and every remaining policy quantity must be
backed by a cited canonical passage. A blocked draft carries no text: it must not be sendable.
"""

from __future__ import annotations

from typing import Iterable

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.drafter import metrics
from services.drafter.evidence_ledger import check_evidence_facts
from services.drafter.lexical import content_words
from services.drafter.overreach import guard_overreach
from services.drafter.policy_ledger import check_policy_claims
from services.drafter.reply import DraftInput, ReplyGenerator, ReplyParts, citations, kept_answer, render_text


def customer_text(ticket: tk.Ticket) -> str:
    return "\n".join([ticket.subject, ticket.body, *(turn.text for turn in ticket.history if turn.author == "customer")])


def grounding(parts: ReplyParts) -> float:
    """Mean share of each factual answer sentence's words found in the passages it cites."""
    scores = []
    for sentence in parts.answer:
        if sentence.proposal:
            continue
        words = set(content_words(sentence.text))
        backing: set[str] = set()
        for source in sentence.sources:
            if 0 <= source < len(parts.sources):
                passage = parts.sources[source].passage
                backing |= set(content_words(f"{passage.title} {passage.section} {passage.text}"))
        scores.append(len(words & backing) / len(words) if words else 0.0)
    return round(sum(scores) / len(scores), 4) if scores else 0.0


def draft_reply(
    ticket: tk.Ticket,
    normalized: tk.NormalizedTicket,
    classification: tk.Classification,
    evidence: Iterable[tk.EvidencePassage],
    *,
    generator: ReplyGenerator,
    executed_actions: frozenset[str] = frozenset(),
    investigation: ev.Investigation | None = None,
    backing_only: frozenset[int] = frozenset(),
) -> tk.Draft:
    """A guarded draft for `ticket`. `executed_actions` holds the kinds of action ("refund",
    "password_reset", ...) actually executed for this ticket; only those may be stated as done.
    `investigation` is what the tenant's systems showed; its findings are the only source of the
    account facts the draft may state. `backing_only`: see DraftInput."""
    request = DraftInput(ticket, normalized, classification, tuple(evidence),
                         investigation if investigation is not None else ev.Investigation(), backing_only)
    parts = generator.generate(request)
    overreach = guard_overreach(parts, executed_actions)
    facts = check_evidence_facts(overreach.parts)
    ledger = check_policy_claims(facts.parts, customer_text=customer_text(ticket))
    final = kept_answer(ledger.parts)
    blocked = facts.blocked or ledger.blocked
    status = tk.DRAFT_STATUS_BLOCKED if blocked else final.status
    draft = tk.Draft(
        text="" if blocked else render_text(final),
        citations=citations(final),
        ledger=[*facts.ledger, *ledger.ledger],
        uncertainties=list(final.uncertainties),
        follow_up_questions=list(final.follow_up_questions),
        next_step=final.next_step,
        status=status,
        block_reason="; ".join(reason for reason in (facts.block_reason, ledger.block_reason) if reason),
        generator=final.generator,
        grounding=grounding(final),
        answerability=final.answerability,
        answerability_reason=final.answerability_reason,
    )
    metrics.record_draft(draft, [finding.action for finding in overreach.findings])
    return draft
