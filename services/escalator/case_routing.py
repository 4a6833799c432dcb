"""What kind of case a ticket is and which human queue owns it. Pure: tables come from
`EscalationConfig` (escalation.yaml)."""

from __future__ import annotations

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.escalator.config import EscalationConfig


def error_codes(normalized: tk.NormalizedTicket) -> list[str]:
    """Error codes the classifier extracted, normalised (upper case, `-` as the only separator) so
    that "err_504", "ERR-504" and "Err 504" are one signature."""
    codes = []
    for identifier in normalized.identifiers:
        if identifier.kind == "error_code" and identifier.value.strip():
            code = "-".join(part for part in identifier.value.upper().replace("_", " ").replace("-", " ").split())
            if code not in codes:
                codes.append(code)
    return codes


def case_type_for(
    classification: tk.Classification,
    normalized: tk.NormalizedTicket,
    incident_id: str,
    config: EscalationConfig,
    investigation: ev.Investigation | None = None,
) -> int:
    """Precedence: incident > policy-exception risk flag > the case type the investigation's
    evidence settled on > error code (product defect) > intent table > default. The evidence comes
    before the guesses from the ticket's words: "my transfer failed" is a product defect by the
    intent table, expected behaviour when the record shows a hold the customer can clear."""
    if incident_id:
        return ev.CASE_TYPE_INCIDENT
    if any(flag in config.policy_exception_risk_flags for flag in classification.risk_flags):
        return ev.CASE_TYPE_POLICY_EXCEPTION
    if investigation is not None and investigation.case_type != ev.CASE_TYPE_UNSPECIFIED:
        return investigation.case_type
    if error_codes(normalized):
        return ev.CASE_TYPE_PRODUCT_DEFECT
    return config.intent_case_types.get(classification.intent, config.default_case_type)


def target_queue_for(classification: tk.Classification, incident_id: str, config: EscalationConfig) -> str:
    """Precedence: risk flags (in the config's order) > incident > intent table > default. Risk
    comes first because a security or legal case inside an incident still needs those specialists."""
    flags = set(classification.risk_flags)
    for flag, queue in config.risk_flag_queues:
        if flag in flags:
            return queue
    if incident_id:
        return config.incident_queue
    return config.intent_queues.get(classification.intent, config.default_queue)
