"""Gateway metrics."""

from prometheus_client import Counter

ACCEPTED = Counter("supportflow_gateway_accepted_total", "Payloads accepted and published", ["kind"])
REJECTED = Counter(
    "supportflow_gateway_rejected_total",
    "Payloads refused, by reason (bad_signature, confirmation_unsigned, bad_json, invalid_payload, too_large, "
    "bad_length, truncated_body, client_timeout, broker_unavailable)",
    ["reason"],
)
