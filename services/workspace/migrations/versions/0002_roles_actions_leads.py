"""Roles and the leads' pages: users can be disabled, API tokens carry a label and who made them,
tickets an assignee, actions the fields of the new kinds (reassign, QA severity, confirm or
decline a proposed action, redraft); the QA sample, the proposed actions and the routing
overrides read from their topics.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("label", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("created_by", sa.String(200), nullable=False, server_default=""))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("assignee", sa.String(150), nullable=False, server_default=""))
    op.create_index("ix_tickets_assignee", "tickets", ["assignee"])
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("assignee", sa.String(150), nullable=False, server_default=""))
        batch.add_column(sa.Column("qa_class", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("proposal_id", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "qa_samples",
        sa.Column("ticket_id", sa.String(200), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("week", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("arrived_at", sa.Float, nullable=False),
    )
    op.create_index("ix_qa_samples_week", "qa_samples", ["week"])
    op.create_table(
        "proposals",
        sa.Column("proposal_id", sa.String(64), primary_key=True),
        sa.Column("ticket_id", sa.String(200), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("proposed_at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False, server_default=""),
        sa.Column("outcome_reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_proposals_ticket", "proposals", ["ticket_id"])
    op.create_table(
        "routing_overrides",
        sa.Column("override_id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("archetype", sa.String(32), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("route", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("issued_by", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_routing_overrides_at", "routing_overrides", ["at"])


def downgrade() -> None:
    for table in ("routing_overrides", "proposals", "qa_samples"):
        op.drop_table(table)
    op.drop_index("ix_tickets_assignee", "tickets")
    with op.batch_alter_table("actions") as batch:
        for column in ("proposal_id", "qa_class", "assignee"):
            batch.drop_column(column)
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("assignee")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("created_by")
        batch.drop_column("label")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled")
