"""The escalator's handlers: classified and drafted tickets in, decisions, incidents and action
records out. No Kafka, faust or gRPC here; `agents.py` wires them into the faust app.

State lives in the stores the state holders were given (in the service: faust tables, see
agents.py; in tests: dicts):
- the incident tracker (incidents.py): windows per burst signature and each counted ticket's
  incident. A ticket with a signature is handled where its signature's windows are (the service
  re-keys it by `incident_signature`), so every replica's windows are exact;
- the action gate's ledger of today's attempts and its proposals awaiting confirmation;
- the tickets answered automatically (answered.py), so that a customer writing back under an
  answered ticket id gets a colleague even when the channel sends no history.
Otherwise decisions need no state: the ticket's route says which handler decides it.

Evidence: a drafted ticket brings the investigation the drafter ran (TicketDrafted.investigation);
a ticket that never reached the drafter (escalated from the classifier) is investigated here, with
the injected `investigate` (main.py: the investigator's gRPC call with a deadline, which never
raises), when its decision hands it to a person. The investigation sets the case type where it
settled one, travels in the packet and on TicketDecided.investigation, and can let a tenant's
draft-for-review ticket be answered on evidence (decision.evidence_settles).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from integrations.crm import FOUND, CustomerDirectory, account_fields
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import Emit, InvalidEvent, new_meta
from supportflow.investigation import Investigate, no_investigation
from supportflow.timestamps import seconds_of, timestamp_at
from supportflow.topics import DECISION_TOPICS, Topic

from services.escalator import metrics
from services.escalator.actions import ActionGate, ActionRequest, Confirmation
from services.escalator.answered import AnsweredTickets
from services.escalator.case_routing import case_type_for, target_queue_for
from services.escalator.config import EscalationConfig
from services.escalator.confirmations import ConfirmationLexicons
from services.escalator.decision import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    Verdict,
    decide_classified,
    decide_drafted,
    is_prompt_injection,
    writes_back_after_an_answer,
)
from services.escalator.incidents import IncidentSignature, IncidentTracker, IncidentUpdate, incident_signature
from services.escalator.packet import build_packet
from services.escalator.help_center import ArticleLookup, no_articles
from services.escalator.similar_cases import SimilarCaseLookup, no_similar_cases

log = logging.getLogger(__name__)

PRODUCER = "escalator"
# Decisions that hand the ticket to a person get a context packet.
PACKET_DECISIONS = frozenset({ev.DECISION_ESCALATE, ev.DECISION_REVIEW})


@dataclass(frozen=True)
class PacketLookups:
    """What a decision that hands a ticket to a person asks the escalator's peers, as each lookup's
    arguments: similar resolved cases always; an investigation when the ticket brings none; the
    help center's passages when it never reached the drafter."""

    similar_cases: tuple[str, str]  # (tenant, query)
    investigate: svc.InvestigateRequest | None
    articles: tuple[str, str, str] | None  # (tenant, query, intent)


def packet_lookups(
    tenant: str,
    ticket: tk.Ticket,
    normalized: tk.NormalizedTicket,
    classification: tk.Classification,
    *,
    draft: tk.Draft | None,
    evidence: list[tk.EvidencePassage] | None,
    investigation: ev.Investigation | None,
) -> PacketLookups:
    query = normalized.problem_statement or ticket.body
    return PacketLookups(
        similar_cases=(tenant, query),
        investigate=None if investigation is not None else svc.InvestigateRequest(
            ticket=ticket, normalized=normalized, classification=classification),
        articles=(tenant, query, classification.intent) if draft is None and not evidence else None,
    )


def _enum_label(enum_type, value: int, prefix: str) -> str:  # type: ignore[no-untyped-def]
    return enum_type.Name(value).removeprefix(prefix).lower()


class Escalator:
    def __init__(
        self,
        config: EscalationConfig,
        crm: CustomerDirectory,
        incidents: IncidentTracker,
        actions: ActionGate,
        *,
        similar_cases: SimilarCaseLookup = no_similar_cases,
        articles: ArticleLookup = no_articles,
        investigate: Investigate = no_investigation,
        lexicons: ConfirmationLexicons | None = None,
        answered: AnsweredTickets | None = None,
        confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._answered = answered if answered is not None else AnsweredTickets(config.answered_memory_s)
        self._similar_cases = similar_cases
        self._articles = articles
        self._investigate = investigate
        self._lexicons = lexicons if lexicons is not None else ConfirmationLexicons(None)
        self._crm = crm
        self._incidents = incidents
        self._actions = actions
        self._threshold = confidence_threshold
        self._clock = clock

    @property
    def config(self) -> EscalationConfig:
        return self._config

    def incident_signature(self, event: ev.TicketClassified | ev.TicketDrafted) -> IncidentSignature | None:
        """The burst signature of a classified or drafted ticket (None: it cannot be part of an
        incident, and needs no incident state to be decided)."""
        tenant = event.ticket.tenant_id or event.meta.tenant_id
        return incident_signature(tenant, event.normalized, event.classification, self._config.incidents)

    def on_classified(self, event: ev.TicketClassified) -> list[Emit]:
        self._validate(event.ticket, event.HasField("classification"))
        emits = self._track_incident(event.meta, event.ticket, event.normalized, event.classification)
        verdict = decide_classified(event.classification, event.normalized)
        if verdict is None:  # AUTO_RESPOND / DRAFT_FOR_REVIEW: decided when the draft arrives
            return emits
        return emits + self._decide(
            event.meta, event.ticket, event.normalized, event.classification, event.timeline, verdict
        )

    def on_drafted(self, event: ev.TicketDrafted) -> list[Emit]:
        self._validate(event.ticket, event.HasField("classification"))
        if not event.HasField("draft"):
            raise InvalidEvent("drafted ticket without a draft")
        # Counted here too (idempotently) in case the classified event was consumed before a restart.
        emits = self._track_incident(event.meta, event.ticket, event.normalized, event.classification)
        tenant = event.ticket.tenant_id or event.meta.tenant_id
        writes_back = writes_back_after_an_answer(event.ticket) or self._answered.wrote_back(
            tenant, event.ticket, self._clock()
        )
        verdict = self._drafted_verdict(event, self._incidents.incident_of(event.ticket.ticket_id), writes_back)
        if verdict is None:
            metrics.DRAFTS_IGNORED.inc()
            log.warning("draft ignored: the classified path owns this route",
                        extra={"fields": {"route": tk.Route.Name(event.classification.route)}})
            return emits
        return emits + self._decide(
            event.meta, event.ticket, event.normalized, event.classification, event.timeline, verdict,
            draft=event.draft, evidence=list(event.evidence), investigation=_investigation_of(event),
        )

    def _drafted_verdict(self, event: ev.TicketDrafted, incident_id: str, writes_back: bool) -> Verdict | None:
        investigation = _investigation_of(event)
        case_type = case_type_for(event.classification, event.normalized, incident_id, self._config, investigation)
        tenant = event.ticket.tenant_id or event.meta.tenant_id
        evidence_at = seconds_of(event.timeline.evidence_at)
        # Whether to waive a fee or grant a refund stays an agent's call even when the records show
        # the charge was right: the intent's own case type holds an automatic reply too.
        by_intent = case_type_for(event.classification, event.normalized, incident_id, self._config)
        policy_exception = ev.CASE_TYPE_POLICY_EXCEPTION in (case_type, by_intent)
        return decide_drafted(
            event.classification, event.normalized, event.draft,
            in_incident=bool(incident_id), policy_exception=policy_exception,
            writes_back=writes_back, confidence_threshold=self._threshold,
            evidence_rule=self._config.evidence_rule(tenant, event.classification.archetype),
            investigation=investigation,
            evidence_age_s=None if evidence_at is None else max(0.0, self._clock() - evidence_at),
        )

    def lookups_for(self, event: ev.TicketClassified | ev.TicketDrafted) -> PacketLookups | None:
        """The peer lookups deciding `event` would make, guessed from the event alone, as if its
        ticket were in no incident and unanswered before (no state is read): the service starts
        them ahead, concurrently, while the events before it are decided. A wrong guess costs a
        lookup made in vain or one made in turn, never a different decision."""
        if isinstance(event, ev.TicketDrafted):
            if not event.HasField("draft") or not event.HasField("classification"):
                return None
            verdict = self._drafted_verdict(event, "", writes_back_after_an_answer(event.ticket))
            draft, evidence, investigation = event.draft, list(event.evidence), _investigation_of(event)
        else:
            verdict = decide_classified(event.classification, event.normalized)
            draft, evidence, investigation = None, None, None
        if verdict is None or verdict.decision not in PACKET_DECISIONS:
            return None
        return packet_lookups(event.ticket.tenant_id or event.meta.tenant_id, event.ticket, event.normalized,
                              event.classification, draft=draft, evidence=evidence, investigation=investigation)

    def on_action_confirmed(self, event: ev.ActionConfirmed) -> list[Emit]:
        """Carry out the proposal the customer confirmed, if everything still allows it; the
        outcome is recorded either way."""
        missing = [name for name, value in (("proposal_id", event.proposal_id), ("ticket_id", event.ticket_id),
                                            ("meta.tenant_id", event.meta.tenant_id)) if not value]
        if missing:
            raise InvalidEvent(f"action confirmation without {', '.join(missing)}")
        confirmation = Confirmation(
            proposal_id=event.proposal_id, ticket_id=event.ticket_id, tenant_id=event.meta.tenant_id,
            confirmation_ref=event.confirmation_ref, confirmed_by=event.confirmed_by,
        )
        record = self._actions.confirm(confirmation, self._tier_of, self._clock())
        log.info("action confirmation", extra={"fields": {
            "proposal_id": event.proposal_id, "status": _enum_label(ev.ActionStatus, record.status, "ACTION_STATUS_")}})
        return [self._action_emit(record)]

    def on_feedback(self, event: ev.FeedbackReceived) -> list[Emit]:
        """A customer's reply on their own channel confirms the ticket's one pending proposal when
        it says yes in the tenant's words (confirmations.py); every other feedback is the learner's."""
        if event.WhichOneof("kind") != "customer_reply":
            return []
        if not event.ticket_id or not event.meta.tenant_id:
            raise InvalidEvent("customer reply without ticket_id or meta.tenant_id")
        tenant, now = event.meta.tenant_id, self._clock()
        pending = self._actions.pending(tenant, event.ticket_id, now)
        if not pending:
            return []
        if not self._lexicons.for_tenant(tenant).confirms(event.customer_reply.text):
            metrics.REPLY_CONFIRMATIONS.labels("not_affirmative").inc()
            return []
        if len(pending) > 1:
            metrics.REPLY_CONFIRMATIONS.labels("ambiguous").inc()
            log.info("a customer's yes with several proposals open: left to the agent",
                     extra={"fields": {"proposals": len(pending)}})
            return []
        channel = (event.source or _enum_label(tk.Channel, event.channel, "CHANNEL_")).strip().lower() or "unknown"
        confirmation = Confirmation(
            proposal_id=pending[0], ticket_id=event.ticket_id, tenant_id=tenant,
            confirmation_ref=f"reply:{event.meta.event_id or event.ticket_id}", confirmed_by=f"customer:{channel}",
        )
        metrics.REPLY_CONFIRMATIONS.labels("confirmed").inc()
        record = self._actions.confirm(confirmation, self._tier_of, now)
        log.info("action confirmed by the customer's reply", extra={"fields": {
            "proposal_id": pending[0], "status": _enum_label(ev.ActionStatus, record.status, "ACTION_STATUS_")}})
        return [self._action_emit(record)]

    def _tier_of(self, customer_id: str) -> int | None:
        found = self._crm.lookup(customer_id)
        return found.record.tier if found.outcome == FOUND else None

    @staticmethod
    def _validate(ticket: tk.Ticket, has_classification: bool) -> None:
        if not ticket.ticket_id:
            raise InvalidEvent("ticket has no ticket_id")
        if not has_classification:
            raise InvalidEvent("ticket has no classification")

    def _received_at(self, meta: ev.EventMeta, ticket: tk.Ticket) -> float:
        return seconds_of(ticket.received_at) or seconds_of(meta.occurred_at) or self._clock()

    def _track_incident(
        self, meta: ev.EventMeta, ticket: tk.Ticket, normalized: tk.NormalizedTicket, classification: tk.Classification
    ) -> list[Emit]:
        update = self._observe_incident(meta, ticket, normalized, classification)
        return [self._incident_event(update)] if update is not None else []

    def _observe_incident(
        self, meta: ev.EventMeta, ticket: tk.Ticket, normalized: tk.NormalizedTicket, classification: tk.Classification
    ) -> IncidentUpdate | None:
        tenant = ticket.tenant_id or meta.tenant_id
        signature = incident_signature(tenant, normalized, classification, self._config.incidents)
        if signature is None:
            return None
        return self._incidents.observe(ticket.ticket_id, signature, self._received_at(meta, ticket), meta.event_id)

    @staticmethod
    def _incident_event(update: IncidentUpdate) -> Emit:
        kind = "created" if update.created else "grew"
        metrics.INCIDENT_UPDATES.labels(kind).inc()
        log.warning("incident %s", kind, extra={"fields": {
            "incident_id": update.incident_id, "signature": update.signature.text, "size": update.size}})
        event = ev.IncidentDetected(
            meta=new_meta(update.signature.tenant_id, PRODUCER),
            incident_id=update.incident_id,
            signature=update.signature.text,
            product=update.signature.product,
            ticket_ids=list(update.ticket_ids),
            first_seen=timestamp_at(update.first_seen),
        )
        return Emit(Topic.INCIDENTS_DETECTED, update.incident_id, event)

    def _decide(
        self,
        meta: ev.EventMeta,
        ticket: tk.Ticket,
        normalized: tk.NormalizedTicket,
        classification: tk.Classification,
        timeline: tk.Timeline,
        verdict: Verdict,
        *,
        draft: tk.Draft | None = None,
        evidence: list[tk.EvidencePassage] | None = None,
        investigation: ev.Investigation | None = None,
    ) -> list[Emit]:
        tenant = ticket.tenant_id or meta.tenant_id
        lookups = None
        if verdict.decision in PACKET_DECISIONS:
            lookups = packet_lookups(tenant, ticket, normalized, classification, draft=draft, evidence=evidence,
                                     investigation=investigation)
            if lookups.investigate is not None:
                # Never reached the drafter: the person it goes to gets the evidence all the same.
                investigation = self._investigate(lookups.investigate)
        now = self._clock()
        incident_id = self._incidents.incident_of(ticket.ticket_id)
        case_type = case_type_for(classification, normalized, incident_id, self._config, investigation)
        # A sent reply needs no human queue; everything else lands in one.
        queue = "" if verdict.decision == ev.DECISION_RESPOND else target_queue_for(classification, incident_id, self._config)

        emits: list[Emit] = []
        proposed: list[str] = []
        proposal = self._config.proposed_tools.get(classification.intent)
        if proposal is not None and not is_prompt_injection(classification):
            tool = proposal.tool
            record = self._actions.attempt(
                ActionRequest(
                    tool=tool, ticket_id=ticket.ticket_id, tenant_id=tenant, customer_id=ticket.customer_id,
                    tier=classification.tier, requested_by=f"escalator:intent:{classification.intent}",
                    params=proposal.params(investigation),
                ),
                now,
            )
            emits.append(self._action_emit(record))
            if record.status == ev.ACTION_STATUS_PROPOSED:
                proposed.append(tool)

        decided = ev.TicketDecided(
            meta=new_meta(tenant, PRODUCER),
            ticket=ticket,
            classification=classification,
            decision=verdict.decision,
            reason=verdict.reason,
            case_type=case_type,
            target_queue=queue,
            incident_id=incident_id,
            timeline=timeline,
        )
        if draft is not None:
            decided.draft.CopyFrom(draft)
        if investigation is not None and investigation != ev.Investigation():
            decided.investigation.CopyFrom(investigation)
        decided.timeline.decided_at.CopyFrom(timestamp_at(now))
        decision_label = _enum_label(ev.Decision, verdict.decision, "DECISION_")
        if lookups is not None:
            if lookups.articles is not None:
                # Never reached the drafter: what the help center says, as a reviewer would see it.
                evidence = self._articles(*lookups.articles)
            decided.packet.CopyFrom(build_packet(
                ticket=ticket, normalized=normalized, classification=classification,
                decision=verdict.decision, case_type=case_type, target_queue=queue,
                account_state=account_fields(self._crm, ticket.customer_id),
                draft=draft, evidence=evidence or [], incident_id=incident_id, proposed_tools=proposed,
                similar_case_ids=self._similar_cases(*lookups.similar_cases),
                investigation=investigation,
            ))
            metrics.PACKET_COMPLETENESS.labels(decision_label).observe(decided.packet.completeness)
            archetype = _enum_label(tk.Archetype, classification.archetype, "ARCHETYPE_")
            metrics.PACKET_FINDINGS.labels(archetype, "with" if decided.packet.investigation else "without").inc()
            if decided.packet.investigation:
                metrics.EVIDENCE_COMPLETENESS.labels(archetype).observe(decided.packet.evidence_completeness)
        if verdict.on_evidence:
            metrics.EVIDENCE_ROUTING.labels("answered" if verdict.decision == ev.DECISION_RESPOND else "held").inc()
        metrics.DECISIONS.labels(decision_label, _enum_label(ev.CaseType, case_type, "CASE_TYPE_")).inc()
        for hold in verdict.holds:
            metrics.AUTO_REPLIES_HELD.labels(hold).inc()
        if verdict.decision == ev.DECISION_RESPOND:
            self._answered.record(tenant, ticket, now)
        log.info("decided", extra={"fields": {"decision": decision_label, "reason": verdict.reason, "queue": queue}})
        return [Emit(DECISION_TOPICS[verdict.decision], ticket.ticket_id, decided)] + emits

    def _action_emit(self, record: ev.ActionRecorded) -> Emit:
        tool = record.tool if record.tool in self._actions.allow_listed else "other"
        metrics.ACTIONS.labels(tool, _enum_label(ev.ActionStatus, record.status, "ACTION_STATUS_")).inc()
        return Emit(Topic.ACTIONS_RECORDED, record.ticket_id, record)


def _investigation_of(event: ev.TicketDrafted) -> ev.Investigation | None:
    return event.investigation if event.HasField("investigation") else None
