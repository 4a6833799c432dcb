"""The first schema: users, API tokens, tickets, deliveries, actions, the audit log and this
database's id.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(150), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenants", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "tickets",
        sa.Column("ticket_id", sa.String(200), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(200), nullable=False),
        sa.Column("archetype", sa.String(32), nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("urgency_rank", sa.Integer, nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("incident", sa.String(200), nullable=False),
        sa.Column("target_queue", sa.String(200), nullable=False),
        sa.Column("decision_event_id", sa.String(64), nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("decided_at", sa.Float, nullable=False),
        sa.Column("arrived_at", sa.Float, nullable=False),
        sa.Column("changed_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tickets_status_order", "tickets", ["status", "urgency_rank", "received_at"])
    op.create_index("ix_tickets_tenant_status_order", "tickets", ["tenant", "status", "urgency_rank", "received_at"])
    op.create_index("ix_tickets_status_queue", "tickets", ["status", "queue"])
    op.create_index("ix_tickets_intent", "tickets", ["intent"])
    op.create_index("ix_tickets_archetype", "tickets", ["archetype"])
    op.create_index("ix_tickets_channel", "tickets", ["channel"])
    op.create_index("ix_tickets_incident", "tickets", ["incident"])
    op.create_table(
        "deliveries",
        sa.Column("event_id", sa.String(64), primary_key=True),
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
        sa.Column("citations", sa.Text, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )
    op.create_index("ix_deliveries_ticket", "deliveries", ["ticket_id"])
    op.create_table(
        "actions",
        sa.Column("action_id", sa.String(64), primary_key=True),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("target_queue", sa.String(200), nullable=False),
        sa.Column("edit_ratio", sa.Float, nullable=True),
        sa.Column("decision_event_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_actions_ticket", "actions", ["ticket_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("event", sa.String(48), nullable=False),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    for table in ("audit_log", "actions", "deliveries", "tickets", "api_tokens", "users", "workspace"):
        op.drop_table(table)
