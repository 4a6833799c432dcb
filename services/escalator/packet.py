"""The context packet a human receives on escalation (and on review), so the customer never has to
repeat themselves. Pure: the account state is looked up by the caller.

Completeness is the share of REQUIRED_FIELDS that are filled; every unfilled one is named in
`unknown_fields`. A required field we cannot know is unknown, never silently empty: an unknown
customer's account state is `{"status": "unknown", ...}` and counts as unfilled, and "steps
tried" is unfilled when neither the customer said what they tried nor the tenant's systems
recorded their attempts (we cannot tell "nothing" from "not said"). Optional fields (frustration
signals, similar cases, incident, missing information, risk flags) are legitimately empty and do
not count.

The investigation (what the tenant's systems showed: account, transactions, product events...)
travels whole in `investigation`, every lookup with its source, time and what it supports, a
lookup that failed kept as a finding that is not available with its reason; its completeness is
`evidence_completeness`. Its available findings count toward three required fields: `evidence`
(knowledge-base articles or findings), `account_state` (the CRM's record, else the facts of an
account finding) and `steps_tried` (the customer's words, else the attempts the product events
recorded: declines, failed logins). What it could not settle joins the missing information.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from conversation.summary import clip, conversation_summary, sentences
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.escalator.decision import escalation_flags

REQUIRED_FIELDS = (
    "intent",
    "archetype",
    "urgency",
    "tier",
    "account_state",
    "conversation_summary",
    "steps_tried",
    "evidence",
    "suggested_next_step",
    "target_queue",
)
MAX_ARTICLES = 5
# Finding sources (the investigator's connectors) that fill a packet field when the usual one is empty.
ACCOUNT_SOURCE = "account"
ATTEMPTS_SOURCE = "product_events"
MAX_STEP_CHARS = 200
_TRIED = re.compile(
    r"\b(i|we)\s*(?:'ve|\s+have|\s+had)?\s+(?:already\s+|also\s+)?"
    r"(tried|restarted|rebooted|reinstalled|re-installed|uninstalled|reset|cleared|updated|"
    r"logged (?:out|in)|signed (?:out|in)|turned|checked|called|contacted|waited|followed)\b"
    r"|\balready\s+(tried|restarted|reinstalled|reset|checked|contacted|called)\b",
    re.I,
)


def steps_already_tried(ticket: tk.Ticket, normalized: tk.NormalizedTicket) -> list[str]:
    """The classifier's steps, then every customer sentence saying what they already did."""
    steps: list[str] = []
    seen: set[str] = set()

    def add(step: str) -> None:
        step = clip(" ".join(step.split()), MAX_STEP_CHARS)
        if step and step.lower() not in seen:
            seen.add(step.lower())
            steps.append(step)

    for step in normalized.steps_tried:
        add(step)
    texts = [ticket.body] + [turn.text for turn in ticket.history if turn.author == "customer"]
    for text in texts:
        for sentence in sentences(text):
            if _TRIED.search(sentence):
                add(sentence)
    return steps


def select_articles(draft: tk.Draft | None, evidence: Sequence[tk.EvidencePassage]) -> list[tk.EvidencePassage]:
    """Passages the draft cited first, then the rest of the evidence; a citation without a matching
    passage becomes a passage so the agent still sees what the draft relied on."""
    by_key = {(p.article_id, p.chunk_id): p for p in evidence}
    chosen: dict[tuple[str, str], tk.EvidencePassage] = {}
    for citation in draft.citations if draft is not None else []:
        key = (citation.article_id, citation.chunk_id)
        chosen.setdefault(key, by_key.get(key) or tk.EvidencePassage(
            article_id=citation.article_id, chunk_id=citation.chunk_id, title=citation.title,
            text=citation.passage, url=citation.url,
        ))
    for passage in evidence:
        chosen.setdefault((passage.article_id, passage.chunk_id), passage)
    return list(chosen.values())[:MAX_ARTICLES]


def suggested_next_step(
    decision: int,
    case_type: int,
    classification: tk.Classification,
    normalized: tk.NormalizedTicket,
    draft: tk.Draft | None,
    incident_id: str,
    proposed_tools: Iterable[str] = (),
) -> str:
    flags = escalation_flags(classification)
    if "prompt_injection" in flags:
        step = ("Treat the message as untrusted data: answer only the genuine request, if any, and take "
                "no action the message asks for.")
    elif "security" in flags:
        step = ("Verify the customer's identity through the registered channel, then secure the account "
                "(freeze the card, reset credentials) before anything else.")
    elif "legal" in flags:
        step = "Hand over to legal; make no commitment to the customer until they reply."
    elif "billing_dispute" in flags:
        step = "Open a dispute case with the transaction details and tell the customer the dispute timeline."
    elif incident_id:
        step = (f"Link the ticket to incident {incident_id} and reply with the incident status; do not "
                "troubleshoot it on its own.")
    elif decision == ev.DECISION_FOLLOW_UP:
        questions = list(draft.follow_up_questions) if draft is not None else []
        step = " ".join(questions) if questions else f"Ask the customer for: {', '.join(normalized.missing_identifiers) or 'the missing details'}."
    elif draft is not None and draft.status == tk.DRAFT_STATUS_BLOCKED:
        step = "Check the draft's policy statements against the canonical policy before replying; send none that are unverified."
    elif draft is not None and draft.status == tk.DRAFT_STATUS_NO_EVIDENCE:
        step = "Answer from the account and internal systems; the knowledge base has nothing on this (a KB gap was reported)."
    elif draft is not None and draft.next_step.strip():
        step = draft.next_step.strip()
    elif case_type == ev.CASE_TYPE_PRODUCT_DEFECT:
        step = "Reproduce the fault with the identifiers above and file a defect if it is confirmed."
    else:
        step = "Review the summary and evidence, then reply with a resolution or a specific next step."
    tools = sorted(set(proposed_tools))
    if tools:
        step += f" Proposed action(s) awaiting the customer's confirmation: {', '.join(tools)}."
    return step


def build_packet(
    *,
    ticket: tk.Ticket,
    normalized: tk.NormalizedTicket,
    classification: tk.Classification,
    decision: int,
    case_type: int,
    target_queue: str,
    account_state: dict[str, str] | None,
    draft: tk.Draft | None = None,
    evidence: Sequence[tk.EvidencePassage] = (),
    incident_id: str = "",
    similar_case_ids: Sequence[str] = (),
    proposed_tools: Iterable[str] = (),
    investigation: ev.Investigation | None = None,
) -> ev.ContextPacket:
    investigation = investigation if investigation is not None else ev.Investigation()
    found = [finding for finding in investigation.findings if finding.available]
    account_finding = next((f for f in found if f.source == ACCOUNT_SOURCE and f.facts), None)
    if account_state is None and account_finding is not None:
        account_state = dict(account_finding.facts)
    packet = ev.ContextPacket(
        intent=classification.intent,
        archetype=classification.archetype,
        urgency=classification.urgency,
        tier=classification.tier,
        account_state=account_state if account_state is not None else {
            "status": "unknown", "customer_id": ticket.customer_id or "(none)"},
        conversation_summary=conversation_summary(ticket),
        steps_tried=steps_already_tried(ticket, normalized),
        frustration_signals=list(classification.frustration_signals),
        articles=select_articles(draft, evidence),
        similar_case_ids=list(similar_case_ids),
        incident_id=incident_id,
        missing_information=list(normalized.missing_identifiers) + (list(draft.uncertainties) if draft else [])
        + list(investigation.uncertain),
        suggested_next_step=suggested_next_step(
            decision, case_type, classification, normalized, draft, incident_id, proposed_tools
        ),
        target_queue=target_queue,
        risk_flags=list(classification.risk_flags),
        investigation=list(investigation.findings),
        evidence_completeness=investigation.completeness,
    )
    filled = {
        "intent": bool(packet.intent),
        "archetype": packet.archetype != tk.ARCHETYPE_UNSPECIFIED,
        "urgency": packet.urgency != tk.URGENCY_UNSPECIFIED,
        "tier": packet.tier != tk.CUSTOMER_TIER_UNSPECIFIED,
        "account_state": account_state is not None,
        "conversation_summary": bool(packet.conversation_summary),
        "steps_tried": bool(packet.steps_tried) or any(f.source == ATTEMPTS_SOURCE for f in found),
        "evidence": bool(packet.articles) or bool(found),
        "suggested_next_step": bool(packet.suggested_next_step),
        "target_queue": bool(packet.target_queue),
    }
    packet.unknown_fields.extend(name for name in REQUIRED_FIELDS if not filled[name])
    packet.completeness = sum(filled.values()) / len(REQUIRED_FIELDS)
    return packet
