"""The routing decision for a ticket: respond, review, follow up or escalate. Pure.

Every ticket is decided exactly once, by one of two paths, and the ticket's route alone says
which, so no state is needed to keep them apart and a redelivered event cannot decide twice:

- `decide_classified` owns the routes that never reach the drafter (ESCALATE, ASK_FOLLOW_UP, and
  an unspecified route, which a human should look at) and returns None for the AI routes.
- `decide_drafted` owns AUTO_RESPOND and DRAFT_FOR_REVIEW and returns None for anything else
  (a draft for a ticket the classified path already decided).

Checks on a draft, first match wins:
1. an escalation risk flag (security, legal, billing dispute, prompt injection)  -> ESCALATE
2. the draft is BLOCKED (unverifiable policy claim or overreach)                   -> ESCALATE
3. identifiers are missing                                                         -> FOLLOW_UP
4. NO_EVIDENCE: account-specific archetype -> ESCALATE, otherwise                   -> REVIEW
5. READY, route AUTO_RESPOND, every ledger claim verified, no risk flag at all,
   confidence >= threshold, text present, no cited article past its review date,
   not judged off the question by the drafter, not a policy exception (the case
   type escalation.yaml gives the intent: a fee charged, a refund), not a reply to
   an earlier answer (an agent or bot turn in the history), not part of an
   incident, and a draft that states account evidence states evidence that settles
   the case as expected behaviour                                                 -> RESPOND
6. anything else                                                                   -> REVIEW (the reason
   lists every condition that stopped an automatic reply)

Answering on evidence: a DRAFT_FOR_REVIEW ticket is treated as AUTO_RESPOND in step 5 when its
tenant opted its archetype in (escalation.yaml `tenants`) and `evidence_settles` finds nothing
against it: the route came from the archetype's automation level in the policy file (not an
override, not low confidence, not the enterprise tier's cap, not a truncated or injected message),
the investigation settled the configured case type with enough of its lookups answered and none
unavailable, the evidence is fresh, and the draft states evidence whose every fact is verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.escalator.config import CASE_TYPES, POLICY_FILE_ROUTE_SOURCE, EvidenceRouting, risk_flag_name

DEFAULT_CONFIDENCE_THRESHOLD = 0.7

ESCALATION_RISK_FLAGS = frozenset(
    {tk.RISK_FLAG_SECURITY, tk.RISK_FLAG_LEGAL, tk.RISK_FLAG_BILLING_DISPUTE, tk.RISK_FLAG_PROMPT_INJECTION}
)
DRAFTED_ROUTES = frozenset({tk.ROUTE_AUTO_RESPOND, tk.ROUTE_DRAFT_FOR_REVIEW})
PROMPT_INJECTION_INPUT_FLAG = "prompt_injection"


@dataclass(frozen=True)
class Verdict:
    decision: int  # events_pb2.Decision
    reason: str
    # What held an auto-respond draft for an agent, as fixed names (HOLDS), for the metric.
    holds: tuple[str, ...] = ()
    # Escalated because the draft itself cannot stand (BLOCKED), not for the ticket's risk.
    draft_blocked: bool = False
    # A draft-for-review ticket whose evidence settled it (`evidence_settles`): answered automatically,
    # or held only by the other automatic-reply conditions.
    on_evidence: bool = False


# Why a draft on the auto-respond route went to an agent instead (the metric's label values).
HOLDS = (
    "not_ready", "empty", "unverified_claims", "risk_flags", "low_confidence", "stale_article", "not_answered",
    "policy_exception", "writes_back", "incident", "evidence_unsettled",
)
# Conversation turns by our side (ConversationTurn.author): a human agent, or an automated answer.
ANSWERING_AUTHORS = frozenset({"agent", "bot"})


def escalation_flags(classification: tk.Classification) -> list[str]:
    """Names of the risk flags that send a ticket to a human, including a prompt-injection input
    flag the classifier raised without the matching risk flag."""
    names = [risk_flag_name(f) for f in classification.risk_flags if f in ESCALATION_RISK_FLAGS]
    if PROMPT_INJECTION_INPUT_FLAG in classification.input_flags and "prompt_injection" not in names:
        names.append("prompt_injection")
    return names


def is_prompt_injection(classification: tk.Classification) -> bool:
    return "prompt_injection" in escalation_flags(classification)


def writes_back_after_an_answer(ticket: tk.Ticket) -> bool:
    """Whether the customer is writing back after an answer from us: every automatic reply tells
    them that a colleague will look at their reply, and an agent's conversation is theirs."""
    return any(turn.author in ANSWERING_AUTHORS for turn in ticket.history)


def _missing(normalized: tk.NormalizedTicket) -> str:
    return ", ".join(normalized.missing_identifiers)


def decide_classified(classification: tk.Classification, normalized: tk.NormalizedTicket) -> Verdict | None:
    """Decide a ticket whose route skips the drafter; None when its draft will decide it."""
    route = classification.route
    if route in DRAFTED_ROUTES:
        return None
    flags = escalation_flags(classification)
    if route == tk.ROUTE_ASK_FOLLOW_UP and not flags:
        missing = _missing(normalized)
        return Verdict(
            ev.DECISION_FOLLOW_UP,
            f"ask the customer for {missing}" if missing else f"classifier asked for a follow-up: {classification.route_reason or 'no reason given'}",
        )
    if flags:
        return Verdict(ev.DECISION_ESCALATE, f"risk flags {', '.join(flags)} need a human")
    if route == tk.ROUTE_ESCALATE:
        return Verdict(ev.DECISION_ESCALATE, f"classifier routed to a human: {classification.route_reason or 'no reason given'}")
    return Verdict(ev.DECISION_ESCALATE, "the classifier gave no route, so a human decides")


EVIDENCE_CLAIM_KIND = "evidence"  # the drafter's ledger kind for an account fact checked against a finding
_CASE_TYPE_NAMES = {value: name for name, value in CASE_TYPES.items()}


def case_type_name(case_type: int) -> str:
    return _CASE_TYPE_NAMES.get(case_type, "unspecified")


def evidence_settles(
    rule: EvidenceRouting | None,
    classification: tk.Classification,
    draft: tk.Draft,
    investigation: ev.Investigation | None,
    evidence_age_s: float | None,
    confidence_threshold: float,
) -> list[str]:
    """Why the evidence does not let a draft-for-review ticket be answered automatically (empty:
    it does). Each reason in words the agent reads."""
    if rule is None:
        return ["route is draft-for-review"]
    why: list[str] = []
    if not classification.route_reason.rstrip().endswith(POLICY_FILE_ROUTE_SOURCE):
        why.append(f"route is draft-for-review ({classification.route_reason or 'no reason given'}), not the "
                   "archetype's automation level from the policy file")
    if classification.tier == tk.CUSTOMER_TIER_ENTERPRISE:
        why.append("enterprise customer")
    if classification.risk_flags or PROMPT_INJECTION_INPUT_FLAG in classification.input_flags:
        why.append("risk flags or a prompt-injection attempt")
    if classification.input_flags:
        why.append(f"input flags {', '.join(classification.input_flags)}")
    if classification.confidence < confidence_threshold:
        why.append("low confidence")
    if investigation is None or not investigation.findings:
        return why + ["no investigation findings"]
    if investigation.case_type not in rule.case_types:
        why.append(f"the evidence settles {case_type_name(investigation.case_type)}, "
                   f"not {' or '.join(case_type_name(c) for c in rule.case_types)}")
    if investigation.completeness < rule.min_evidence_completeness or not all(f.available for f in investigation.findings):
        why.append(f"evidence completeness {investigation.completeness:.2f} < {rule.min_evidence_completeness:.2f}"
                   if investigation.completeness < rule.min_evidence_completeness else "a lookup was unavailable")
    if evidence_age_s is None or evidence_age_s > rule.max_evidence_age_s:
        why.append("stale evidence" if evidence_age_s is not None else "no time for the evidence")
    stated = [claim for claim in draft.ledger if claim.kind == EVIDENCE_CLAIM_KIND]
    if not stated:
        why.append("the draft states no evidence")
    elif not all(claim.verified for claim in stated):
        why.append("an evidence fact in the draft is not verified")
    return why


def _evidence_unsettled(draft: tk.Draft, investigation: ev.Investigation | None,
                        settles_on: tuple[int, ...]) -> str:
    """Why the account evidence a draft states must not go out unread (empty: it may). A reply
    that tells the customer what their account shows is sent automatically only when that
    evidence settles the case as one the customer can act on alone: expected behaviour, or a case
    type the tenant opted the archetype into (`settles_on`). A missing card, a defect, an incident
    or a case the evidence leaves open is an agent's to explain."""
    if not any(claim.kind == EVIDENCE_CLAIM_KIND for claim in draft.ledger):
        return ""
    if investigation is None:
        return "the draft states account evidence but no investigation backs it"
    if investigation.case_type in settles_on:
        return ""
    settled = case_type_name(investigation.case_type)
    return ("the draft states account evidence that does not settle the case" if settled == "unspecified"
            else f"the account evidence settles {settled}, not {' or '.join(case_type_name(c) for c in settles_on)}")


def decide_drafted(
    classification: tk.Classification,
    normalized: tk.NormalizedTicket,
    draft: tk.Draft,
    *,
    in_incident: bool = False,
    policy_exception: bool = False,
    writes_back: bool = False,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    evidence_rule: EvidenceRouting | None = None,
    investigation: ev.Investigation | None = None,
    evidence_age_s: float | None = None,
) -> Verdict | None:
    """Decide a drafted ticket; None when the classified path owns the ticket's route.
    `evidence_rule` is the tenant's opt-in for the ticket's archetype (None: none)."""
    if classification.route not in DRAFTED_ROUTES:
        return None
    flags = escalation_flags(classification)
    if flags:
        return Verdict(ev.DECISION_ESCALATE, f"risk flags {', '.join(flags)} need a human")
    if draft.status == tk.DRAFT_STATUS_BLOCKED:
        return Verdict(ev.DECISION_ESCALATE, f"draft blocked: {draft.block_reason or 'no reason given'}", draft_blocked=True)
    if normalized.missing_identifiers:
        return Verdict(ev.DECISION_FOLLOW_UP, f"ask the customer for {_missing(normalized)}")
    if draft.status == tk.DRAFT_STATUS_NO_EVIDENCE:
        if classification.archetype == tk.ARCHETYPE_ACCOUNT_SPECIFIC:
            return Verdict(
                ev.DECISION_ESCALATE, "no knowledge-base evidence and the answer depends on the customer's account"
            )
        return Verdict(ev.DECISION_REVIEW, "no knowledge-base evidence: an agent writes the answer")

    blockers: list[tuple[str, str]] = []  # (hold, what the agent reads)
    on_evidence = False
    if classification.route != tk.ROUTE_AUTO_RESPOND:
        against = evidence_settles(evidence_rule, classification, draft, investigation, evidence_age_s,
                                   confidence_threshold)
        if against:
            reason = "route is draft-for-review" if evidence_rule is None else (
                "route is draft-for-review and the evidence does not settle it: " + ", ".join(against))
            blockers.append(("", reason))  # policy, not a hold
        on_evidence = not against
    if draft.status != tk.DRAFT_STATUS_READY:
        blockers.append(("not_ready", f"draft status is {tk.DraftStatus.Name(draft.status)}"))
    if not draft.text.strip():
        blockers.append(("empty", "draft is empty"))
    unverified = [claim.claim for claim in draft.ledger if not claim.verified]
    if unverified:
        blockers.append(("unverified_claims", f"{len(unverified)} policy claim(s) not verified"))
    if classification.risk_flags:
        flags = ", ".join(risk_flag_name(f) for f in classification.risk_flags)
        blockers.append(("risk_flags", f"risk flags {flags}"))
    if classification.confidence < confidence_threshold:
        blockers.append(("low_confidence", f"confidence {classification.confidence:.2f} < {confidence_threshold:.2f}"))
    stale = [citation.title or citation.article_id for citation in draft.citations if citation.stale]
    if stale:
        # The KB owner's review-by date says the article may no longer be right: an agent checks.
        blockers.append(("stale_article", f"cites {len(stale)} article(s) past their review date: {'; '.join(stale)}"))
    if draft.answerability == tk.ANSWERABILITY_NOT_ANSWERED:
        because = f" ({draft.answerability_reason})" if draft.answerability_reason else ""
        blockers.append(("not_answered", f"{draft.generator or 'the drafter'} judged that the passages do not answer the question{because}"))
    if policy_exception:
        # Whether to waive the fee or grant the refund is an agent's call; the draft helps them.
        blockers.append(("policy_exception", f"a policy exception case ({classification.intent or 'no intent'}): an agent decides"))
    if writes_back:
        blockers.append(("writes_back", "the customer wrote back after an earlier answer: a colleague takes over"))
    if in_incident:
        blockers.append(("incident", "the ticket is part of an open incident"))
    # (a draft-for-review ticket's evidence was weighed above, by `evidence_settles`)
    settles_on = evidence_rule.case_types if evidence_rule else (ev.CASE_TYPE_EXPECTED_BEHAVIOUR,)
    unsettled = (_evidence_unsettled(draft, investigation, settles_on)
                 if classification.route == tk.ROUTE_AUTO_RESPOND else "")
    if unsettled:
        blockers.append(("evidence_unsettled", unsettled))
    if blockers:
        holds = tuple(hold for hold, _ in blockers) if classification.route == tk.ROUTE_AUTO_RESPOND or on_evidence else ()
        return Verdict(ev.DECISION_REVIEW, "agent review: " + "; ".join(text for _, text in blockers), holds,
                       on_evidence=on_evidence)
    claims = len(draft.ledger)
    reason = f"ready draft, confidence {classification.confidence:.2f}, {claims} policy claim(s) all verified"
    if on_evidence:
        facts = sum(1 for claim in draft.ledger if claim.kind == EVIDENCE_CLAIM_KIND)
        reason += (f"; answered on evidence: the investigation settles {case_type_name(investigation.case_type)} "
                   f"with completeness {investigation.completeness:.2f}, {facts} evidence fact(s) verified")
    return Verdict(ev.DECISION_RESPOND, reason, on_evidence=on_evidence)
