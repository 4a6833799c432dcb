"""The workspace's tables (SQLAlchemy Core), as the queries see them. The schema itself is made by
the Alembic revisions in migrations/versions, never by `metadata.create_all`: a test checks that
the two agree.

Times are Unix seconds (float). A ticket keeps its whole TicketDecided as JSON (`decision`), the
columns beside it are what the queue filters and sorts on."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

workspace = sa.Table(
    "workspace",
    metadata,
    # This database's id: part of the Kafka consumer group, so a new database reads every topic from
    # the beginning and rebuilds the queue.
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("tenants", sa.Text, nullable=False),  # "*" or tenant ids separated by commas
    sa.Column("created_at", sa.Float, nullable=False),
    # A disabled user cannot sign in, and their sessions and API tokens count for nothing; the row
    # stays, so the audit log and the actions keep naming them.
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("label", sa.String(100), nullable=False, server_default=""),
    sa.Column("created_by", sa.String(200), nullable=False, server_default=""),  # "agent:<admin>", or "" (bootstrap)
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(16), nullable=False),  # review, escalated, follow_up
    sa.Column("intent", sa.String(200), nullable=False),
    sa.Column("archetype", sa.String(32), nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("urgency_rank", sa.Integer, nullable=False),  # critical 4 .. unspecified 0: the sort key
    sa.Column("tier", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("incident", sa.String(200), nullable=False),
    sa.Column("target_queue", sa.String(200), nullable=False),
    sa.Column("decision_event_id", sa.String(64), nullable=False),
    sa.Column("decision", sa.Text, nullable=False),  # the TicketDecided as JSON
    sa.Column("status", sa.String(16), nullable=False),  # open, sent, rejected, escalated
    sa.Column("received_at", sa.Float, nullable=False),  # the gateway received the ticket
    sa.Column("decided_at", sa.Float, nullable=False),
    sa.Column("arrived_at", sa.Float, nullable=False),  # the workspace read the decision
    sa.Column("changed_at", sa.Float, nullable=False),
    sa.Column("assignee", sa.String(150), nullable=False, server_default=""),  # a username; "": nobody yet
)
# The queue page: open tickets (of some tenants, of one queue...), most urgent then newest first.
sa.Index("ix_tickets_status_order", tickets.c.status, tickets.c.urgency_rank, tickets.c.received_at)
sa.Index("ix_tickets_tenant_status_order", tickets.c.tenant, tickets.c.status, tickets.c.urgency_rank,
         tickets.c.received_at)
sa.Index("ix_tickets_status_queue", tickets.c.status, tickets.c.queue)
sa.Index("ix_tickets_intent", tickets.c.intent)
sa.Index("ix_tickets_archetype", tickets.c.archetype)
sa.Index("ix_tickets_channel", tickets.c.channel)
sa.Index("ix_tickets_incident", tickets.c.incident)
sa.Index("ix_tickets_assignee", tickets.c.assignee)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),  # the DeliveryRecorded's
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("decision_event_id", sa.String(64), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("external_ticket_id", sa.String(500), nullable=False),
    sa.Column("external_id", sa.String(500), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("citations", sa.Text, nullable=False),  # JSON list
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("recorded_at", sa.Float, nullable=False),
)
sa.Index("ix_deliveries_ticket", deliveries.c.ticket_id)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("action_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),  # one of handlers.ACTION_KINDS
    sa.Column("agent", sa.String(200), nullable=False),  # "agent:<username>"
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("target_queue", sa.String(200), nullable=False),
    sa.Column("edit_ratio", sa.Float, nullable=True),
    sa.Column("decision_event_id", sa.String(64), nullable=False),  # the decision acted on
    sa.Column("assignee", sa.String(150), nullable=False, server_default=""),  # reassign: the username
    sa.Column("qa_class", sa.String(32), nullable=False, server_default=""),  # qa_severity
    sa.Column("proposal_id", sa.String(64), nullable=False, server_default=""),  # confirm / decline_action
)
sa.Index("ix_actions_ticket", actions.c.ticket_id)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),  # "agent:<username>", or the username tried
    sa.Column("event", sa.String(48), nullable=False),  # login, login_refused, logout, action, refused
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
)
sa.Index("ix_audit_log_at", audit_log.c.at)

# The learner's weekly QA sample (qa.samples), one row per sampled ticket; its severity class is the
# qa_severity action on that ticket (`actions`), so a class read back before its sample still counts.
qa_samples = sa.Table(
    "qa_samples",
    metadata,
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("week", sa.String(16), nullable=False),  # ISO week, "2026-W49"
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("decision", sa.Text, nullable=False),  # the sampled TicketDecided as JSON
    sa.Column("arrived_at", sa.Float, nullable=False),
)
sa.Index("ix_qa_samples_week", qa_samples.c.week)

# Actions the escalator proposed (ActionRecorded PROPOSED on actions.recorded), waiting for a
# confirmation; `outcome` is what a later attempt naming the proposal came to (executed, dry_run,
# refused). Whether an agent confirmed or declined it is the agent's action (`actions`).
proposals = sa.Table(
    "proposals",
    metadata,
    sa.Column("proposal_id", sa.String(64), primary_key=True),  # the PROPOSED ActionRecorded's action_id
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("tool", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON object
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("proposed_at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False, server_default=""),
    sa.Column("outcome_reason", sa.Text, nullable=False, server_default=""),
)
sa.Index("ix_proposals_ticket", proposals.c.ticket_id)

# Every routing override (routing.overrides): the learner's guardrails and people's rollbacks,
# who changed what and why. The leads' audit view.
routing_overrides = sa.Table(
    "routing_overrides",
    metadata,
    sa.Column("override_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),  # "*": every tenant
    sa.Column("archetype", sa.String(32), nullable=False),
    sa.Column("action", sa.String(24), nullable=False),  # set_automation, kill_switch_on, kill_switch_off, clear
    sa.Column("route", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("issued_by", sa.String(200), nullable=False),  # "learner:guardrail", "human:<username>"
    sa.Column("at", sa.Float, nullable=False),
)
sa.Index("ix_routing_overrides_at", routing_overrides.c.at)
