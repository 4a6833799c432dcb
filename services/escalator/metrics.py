"""Escalator metrics. Label values come from fixed sets: decision and case type enum names
(lower case, without prefix), the allow-listed tools plus "other", action statuses."""

from prometheus_client import Counter, Histogram

DECISIONS = Counter(
    "supportflow_escalator_decisions_total",
    "Tickets decided, by decision (respond, review, follow_up, escalate) and case type",
    ["decision", "case_type"],
)
AUTO_REPLIES_HELD = Counter(
    "supportflow_escalator_auto_replies_held_total",
    "Drafts on the auto-respond route sent to an agent instead, by each condition that held them "
    "(decision.HOLDS: stale_article means a cited article is past its review date)",
    ["hold"],
)
DRAFTS_IGNORED = Counter(
    "supportflow_escalator_drafts_ignored_total",
    "Drafts for tickets whose route the classified path already decided (a drafter that drafts what it should not)",
)
INCIDENT_UPDATES = Counter(
    "supportflow_escalator_incident_updates_total",
    "IncidentDetected events, by kind (created, grew)",
    ["kind"],
)
PACKET_COMPLETENESS = Histogram(
    "supportflow_escalator_packet_completeness",
    "Completeness of context packets (share of required fields filled), by decision",
    ["decision"],
    buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
ARTICLE_LOOKUPS = Counter(
    "supportflow_escalator_article_lookups_total",
    "Retriever.Search calls for the packets of tickets that never reached the drafter, by outcome "
    "(found; none: nothing above the gap threshold; error: the packet goes without)",
    ["outcome"],
)
SIMILAR_CASE_LOOKUPS = Counter(
    "supportflow_escalator_similar_cases_lookups_total",
    "SimilarCases calls for context packets, by outcome (found, none, error: the packet goes without)",
    ["outcome"],
)
LOOKUPS_AHEAD = Counter(
    "supportflow_escalator_lookups_ahead_total",
    "Peer lookups of packet decisions (similar cases, articles, investigations), by how they were made: "
    "used (started ahead, while earlier events were decided), not_started (made in turn: the guess said no "
    "packet), unused (started ahead for a decision that did not need it; the peer's work was wasted)",
    ["outcome"],
)
ACTIONS = Counter(
    "supportflow_escalator_actions_total",
    "Action attempts, by tool (allow-listed names, else other) and status (proposed, dry_run, executed, refused)",
    ["tool", "status"],
)
PACKET_FINDINGS = Counter(
    "supportflow_escalator_packet_findings_total",
    "Context packets, by archetype and whether they carry investigation findings (with, without)",
    ["archetype", "findings"],
)
EVIDENCE_COMPLETENESS = Histogram(
    "supportflow_escalator_evidence_completeness",
    "Evidence completeness of packets with findings (share of the playbook's lookups that answered), by archetype",
    ["archetype"],
    buckets=(0.2, 0.4, 0.6, 0.8, 0.9, 1.0),
)
EVIDENCE_ROUTING = Counter(
    "supportflow_escalator_evidence_routing_total",
    "Draft-for-review tickets whose evidence settled them under the tenant's opt-in, by outcome "
    "(answered automatically; held by another automatic-reply condition)",
    ["outcome"],
)
REPLY_CONFIRMATIONS = Counter(
    "supportflow_escalator_reply_confirmations_total",
    "Customer replies on a ticket with a pending proposal, by outcome (confirmed; not_affirmative: "
    "not a yes in the tenant's lexicon; ambiguous: several proposals open, left to the agent)",
    ["outcome"],
)
