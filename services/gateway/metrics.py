"""Gateway metrics."""

from prometheus_client import Counter

ACCEPTED = Counter("supportflow_gateway_accepted_total", "Payloads accepted and published", ["kind"])
REJECTED = Counter(
    "supportflow_gateway_rejected_total",
    "Payloads refused, by reason (bad_signature, confirmation_unsigned, bad_json, invalid_payload, too_large, "
    "bad_length, bad_request, truncated_body, client_timeout, broker_unavailable)",
    ["reason"],
)

# Channel intake (helpdesk webhooks and mail), per provider. Label values come from these sets.
CHANNEL_PROVIDERS = ("zendesk", "intercom", "freshdesk", "email")
CHANNEL_REFUSALS = (
    "bad_signature",  # the provider's signature or shared secret did not hold (401)
    "missing_field",  # the payload lacks what the adapter needs (400; the reply names the field)
    "bad_json",  # the body is not a JSON object (400)
    "unknown_tenant",  # no such tenant, or it has no such channel (404; SMTP 550)
    "too_large",  # over the body limit (413) or the mail size limit (SMTP 552)
    "ignored",  # an event the adapter does not act on: an agent's comment, a ping, an auto-reply (200)
    "broker_unavailable",  # Kafka did not acknowledge (503; SMTP 451)
    "unreadable",  # a mail the parser could not read at all (SMTP 554)
    "invalid_outcome",  # an outcome it could not read (a rating out of range...): dead-lettered (400)
)
CHANNEL_ACCEPTED = Counter(
    "supportflow_gateway_channel_accepted_total", "Channel deliveries published as tickets, by provider", ["provider"]
)
CHANNEL_REFUSED = Counter(
    "supportflow_gateway_channel_refused_total",
    "Channel deliveries not published, by provider and reason (" + ", ".join(CHANNEL_REFUSALS) + ")",
    ["provider", "reason"],
)


# Outcomes from the channels (tickets.feedback), per provider; label values from these sets.
OUTCOME_KINDS = ("csat", "customer_reply", "status_change")
OUTCOME_REFUSALS = ("invalid_rating", "invalid_status")
OUTCOMES = Counter(
    "supportflow_gateway_outcomes_total",
    "Outcomes read from a channel and published to tickets.feedback, by provider and kind (" + ", ".join(OUTCOME_KINDS) + ")",
    ["provider", "kind"],
)
OUTCOMES_DEAD_LETTERED = Counter(
    "supportflow_gateway_outcomes_dead_lettered_total",
    "Outcomes a channel sent that could not be read, dead-lettered to tickets.feedback.dlq, by provider and reason ("
    + ", ".join(OUTCOME_REFUSALS) + ")",
    ["provider", "reason"],
)


def outcome_published(provider: str, kind: str) -> None:
    if provider in CHANNEL_PROVIDERS and kind in OUTCOME_KINDS:
        OUTCOMES.labels(provider, kind).inc()


def outcome_dead_lettered(provider: str, reason: str) -> None:
    if provider in CHANNEL_PROVIDERS and reason in OUTCOME_REFUSALS:
        OUTCOMES_DEAD_LETTERED.labels(provider, reason).inc()


def channel_refused(provider: str, reason: str) -> None:
    if provider in CHANNEL_PROVIDERS and reason in CHANNEL_REFUSALS:
        CHANNEL_REFUSED.labels(provider, reason).inc()


def channel_accepted(provider: str) -> None:
    if provider in CHANNEL_PROVIDERS:
        CHANNEL_ACCEPTED.labels(provider).inc()
