"""The workspace database: users and tokens, the queue of tickets, what their channels received,
every action and the audit log. SQLAlchemy Core; SQLite (a file under the cache dir) by default,
PostgreSQL in deployments (`SUPPORTFLOW_WORKSPACE_DB_URL`; the driver must be in the image).

The schema is Alembic's: `WorkspaceStore` runs `upgrade head` when it opens the database. Every
write is one short transaction. Reads of tickets always name the tenants the reader may see
(`grant`: None for every tenant), so another tenant's ticket is not found rather than refused.

Writes come from two sides: the consumer (decisions, deliveries and, when the queue is rebuilt,
the actions already taken, from agent.actions) and the web (the actions taken now). Both are
idempotent by the event's own id, so the same action arriving from both sides counts once.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.workspace.handlers import (
    CONFIRM_ACTION,
    DECLINE_ACTION,
    OPEN,
    QA_SEVERITY,
    QUEUES,
    ActionRecord,
    DeliveryRow,
    Proposal,
    ProposalOutcome,
    ProposalRow,
    QaSampleRow,
    QueueRow,
    TicketEffect,
)
from services.workspace.models import (
    actions,
    api_tokens,
    audit_log,
    deliveries,
    proposals,
    qa_samples,
    routing_overrides,
    tickets,
    users,
    workspace,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ALL_TENANTS = "*"
# The filters of the queue page and API, each a column compared for equality.
FILTERS = ("tenant", "queue", "archetype", "intent", "urgency", "channel", "incident", "assignee", "status")


def create_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        # The web answers on several threads while the consumer writes: WAL lets readers on while
        # one writer writes, and a writer waits for another instead of failing at once.
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class WorkspaceStore:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        migrate(self.engine)
        self._workspace_id = self._ensure_workspace_id()

    def close(self) -> None:
        self.engine.dispose()

    # --- this database ---------------------------------------------------------------------------

    @property
    def workspace_id(self) -> str:
        """This database's random id, made when the database was."""
        return self._workspace_id

    def _ensure_workspace_id(self) -> str:
        with self.engine.begin() as db:
            found = db.execute(sa.select(workspace.c.id)).scalar()
            if found:
                return found
            made = uuid.uuid4().hex
            try:
                db.execute(workspace.insert().values(id=made, created_at=time.time()))
            except IntegrityError:  # another replica made it first
                pass
        with self.engine.connect() as db:
            return db.execute(sa.select(workspace.c.id).order_by(workspace.c.created_at)).scalar()

    # --- users and tokens ------------------------------------------------------------------------

    def user_count(self) -> int:
        with self.engine.connect() as db:
            return db.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()

    def create_user(self, username: str, password_hash: str, role: str, tenants: Iterable[str] | str) -> int:
        granted = tenants if isinstance(tenants, str) else ",".join(sorted(set(tenants)))
        with self.engine.begin() as db:
            result = db.execute(users.insert().values(username=username, password_hash=password_hash, role=role,
                                                      tenants=granted, created_at=time.time()))
            return int(result.inserted_primary_key[0])

    def user_by_name(self, username: str) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(users).where(users.c.username == username)).mappings().first()
        return dict(row) if row else None

    def user_by_id(self, user_id: int) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(users).where(users.c.id == user_id)).mappings().first()
        return dict(row) if row else None

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self.engine.begin() as db:
            db.execute(users.update().where(users.c.id == user_id).values(password_hash=password_hash))

    def users(self) -> list[dict]:
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(sa.select(users).order_by(users.c.username)).mappings()]

    def update_user(self, user_id: int, **values: object) -> bool:
        """Change a user's role, tenants or disabled flag; False when there is no such user."""
        allowed = {"role", "tenants", "disabled"}
        if not values or set(values) - allowed:
            raise ValueError(f"only {', '.join(sorted(allowed))} can be changed")
        with self.engine.begin() as db:
            return db.execute(users.update().where(users.c.id == user_id).values(**values)).rowcount == 1

    def usernames_granted(self, tenant: str) -> list[str]:
        """The active users who may see `tenant`'s tickets (granted it, or every tenant)."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(users.c.username, users.c.tenants).where(sa.not_(users.c.disabled))
                              .order_by(users.c.username)).all()
        found = []
        for username, granted in rows:
            names = {t.strip() for t in granted.split(",")}
            if granted.strip() == ALL_TENANTS or tenant in names:
                found.append(username)
        return found

    def add_token(self, token_sha256: str, user_id: int, *, label: str = "", created_by: str = "") -> bool:
        """Register a token's digest for a user; False when it was already registered."""
        try:
            with self.engine.begin() as db:
                db.execute(api_tokens.insert().values(token_sha256=token_sha256, user_id=user_id, created_at=time.time(),
                                                      label=label[:100], created_by=created_by[:200]))
            return True
        except IntegrityError:
            return False

    def tokens(self) -> list[dict]:
        """Every API token (its digest, never the token), with its user."""
        query = (sa.select(api_tokens.c.token_sha256, api_tokens.c.label, api_tokens.c.created_at,
                           api_tokens.c.created_by, users.c.username, users.c.disabled)
                 .join(users, api_tokens.c.user_id == users.c.id).order_by(api_tokens.c.created_at.desc()))
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(query).mappings()]

    def revoke_token(self, token_sha256: str) -> dict | None:
        """Remove a token; returns what it was (None: no such token)."""
        with self.engine.begin() as db:
            row = db.execute(sa.select(api_tokens.c.label, users.c.username)
                             .join(users, api_tokens.c.user_id == users.c.id)
                             .where(api_tokens.c.token_sha256 == token_sha256)).mappings().first()
            if row is None:
                return None
            db.execute(api_tokens.delete().where(api_tokens.c.token_sha256 == token_sha256))
            return dict(row)

    def user_by_token(self, token_sha256: str) -> dict | None:
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(users).join(api_tokens, api_tokens.c.user_id == users.c.id)
                .where(api_tokens.c.token_sha256 == token_sha256)
            ).mappings().first()
        return dict(row) if row else None

    # --- the queue -------------------------------------------------------------------------------

    def upsert_ticket(self, row: QueueRow) -> bool:
        """Put a decision in the queue: a new ticket opens; a newer decision on a known ticket
        replaces the old one and opens it again; the same or an older one changes nothing.
        Returns whether anything changed."""
        now = time.time()
        with self.engine.begin() as db:
            return self._upsert_ticket(db, row, now)

    def _upsert_ticket(self, db: sa.Connection, row: QueueRow, now: float) -> bool:
        values = asdict(row)
        values["decision"] = values.pop("decision_json")
        existing = db.execute(
            sa.select(tickets.c.decision_event_id, tickets.c.decided_at).where(tickets.c.ticket_id == row.ticket_id)
        ).first()
        if existing is None:
            db.execute(tickets.insert().values(**values, status=OPEN, arrived_at=now, changed_at=now))
            return True
        if existing.decision_event_id == row.decision_event_id or row.decided_at < existing.decided_at:
            return False
        db.execute(tickets.update().where(tickets.c.ticket_id == row.ticket_id)
                   .values(**values, status=OPEN, arrived_at=now, changed_at=now))
        return True

    def queue(self, grant: frozenset[str] | None, filters: dict[str, str], *, limit: int = 200) -> list[dict]:
        """Tickets matching `filters` (column -> value; status defaults to open) among the granted
        tenants' ones, most urgent then newest first."""
        query = sa.select(
            tickets.c.ticket_id, tickets.c.tenant, tickets.c.queue, tickets.c.intent, tickets.c.archetype,
            tickets.c.urgency, tickets.c.tier, tickets.c.channel, tickets.c.incident, tickets.c.status,
            tickets.c.received_at, tickets.c.changed_at, tickets.c.assignee,
        )
        query = self._where(query, grant, filters)
        query = query.order_by(tickets.c.urgency_rank.desc(), tickets.c.received_at.desc(), tickets.c.ticket_id).limit(limit)
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(query).mappings()]

    def counts(self, grant: frozenset[str] | None, status: str = OPEN) -> dict[str, int]:
        """Tickets per queue with `status`, among the granted tenants' ones."""
        query = sa.select(tickets.c.queue, sa.func.count()).where(tickets.c.status == status).group_by(tickets.c.queue)
        if grant is not None:
            query = query.where(tickets.c.tenant.in_(sorted(grant)))
        found = dict.fromkeys(QUEUES, 0)
        with self.engine.connect() as db:
            for queue, count in db.execute(query):
                found[queue] = count
        return found

    def filter_values(self, grant: frozenset[str] | None) -> dict[str, list[str]]:
        """The values each free filter takes among the granted tenants' tickets, for the page's
        select boxes."""
        values = {}
        with self.engine.connect() as db:
            for name in ("tenant", "intent", "archetype", "channel", "incident", "assignee"):
                column = tickets.c[name]
                query = sa.select(column).distinct().where(column != "").order_by(column).limit(500)
                if grant is not None:
                    query = query.where(tickets.c.tenant.in_(sorted(grant)))
                values[name] = [v for (v,) in db.execute(query)]
        return values

    def known_target_queues(self, grant: frozenset[str] | None) -> list[str]:
        query = sa.select(tickets.c.target_queue).distinct().where(tickets.c.target_queue != "")
        if grant is not None:
            query = query.where(tickets.c.tenant.in_(sorted(grant)))
        with self.engine.connect() as db:
            return sorted(v for (v,) in db.execute(query.limit(200)))

    def _where(self, query: sa.Select, grant: frozenset[str] | None, filters: dict[str, str]) -> sa.Select:
        if grant is not None:
            query = query.where(tickets.c.tenant.in_(sorted(grant)))
        status = filters.get("status") or OPEN
        if status != "all":
            query = query.where(tickets.c.status == status)
        for name in FILTERS:
            value = filters.get(name)
            if name != "status" and value:
                query = query.where(tickets.c[name] == value)
        return query

    def ticket(self, ticket_id: str, grant: frozenset[str] | None) -> dict | None:
        """The ticket's row, or None when it does not exist or its tenant is not granted."""
        query = sa.select(tickets).where(tickets.c.ticket_id == ticket_id)
        if grant is not None:
            query = query.where(tickets.c.tenant.in_(sorted(grant)))
        with self.engine.connect() as db:
            row = db.execute(query).mappings().first()
        return dict(row) if row else None

    # --- deliveries ------------------------------------------------------------------------------

    def add_delivery(self, row: DeliveryRow) -> bool:
        values = asdict(row)
        values["citations"] = values.pop("citations_json")
        try:
            with self.engine.begin() as db:
                db.execute(deliveries.insert().values(**values, recorded_at=time.time()))
            return True
        except IntegrityError:  # the same DeliveryRecorded again
            return False

    def deliveries(self, ticket_id: str) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(deliveries).where(deliveries.c.ticket_id == ticket_id)
                              .order_by(deliveries.c.delivered_at, deliveries.c.recorded_at)).mappings()
            return [dict(row) for row in rows]

    # --- actions ---------------------------------------------------------------------------------

    def record_action(self, record: ActionRecord, effect: TicketEffect | str | None, *, ticket: QueueRow | None = None,
                      address: str = "", audit: bool = True) -> bool:
        """Record an action and apply its effect (a status, or a TicketEffect: status, assignee,
        redrafted decision) to the ticket if the action was on the ticket's current decision; with
        `audit`, write the audit entry of an action taken now. `ticket` (the decision acted on)
        makes the ticket first when it is not known yet, as when agent.actions is read before the
        decision topics in a rebuild. Returns False, changing nothing but the audit log, when the
        action was already recorded."""
        if not isinstance(effect, TicketEffect):
            effect = TicketEffect(effect, None, None)
        now = time.time()
        with self.engine.begin() as db:
            if audit:
                # Written even when the consumer, reading the action back from agent.actions, was
                # quicker than the web thread that published it and recorded the action first.
                detail = record.kind + (f" ({record.reason})" if record.reason else "") + (
                    f" -> {record.target_queue}" if record.target_queue else "") + (
                    f" -> {record.assignee}" if record.assignee else "") + (
                    f": {record.qa_class}" if record.qa_class else "") + (
                    f" of proposal {record.proposal_id}" if record.proposal_id else "")
                db.execute(audit_log.insert().values(at=now, actor=record.agent, event="action", ticket_id=record.ticket_id,
                                                     detail=detail, address=address[:64]))
            known = db.execute(sa.select(actions.c.action_id).where(actions.c.action_id == record.action_id)).first()
            if known is not None:
                return False
            if ticket is not None:
                self._upsert_ticket(db, ticket, now)
            db.execute(actions.insert().values(**asdict(record)))
            changes: dict[str, object] = {}
            if effect.status is not None:
                changes["status"] = effect.status
                if record.target_queue:
                    changes["target_queue"] = record.target_queue
            if effect.assignee is not None:
                changes["assignee"] = effect.assignee
            if effect.decision_json is not None:
                changes["decision"] = effect.decision_json
            if changes:
                db.execute(tickets.update()
                           .where(tickets.c.ticket_id == record.ticket_id)
                           .where(tickets.c.decision_event_id == record.decision_event_id)
                           .values(changed_at=now, **changes))
        return True

    def actions(self, ticket_id: str) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(actions).where(actions.c.ticket_id == ticket_id).order_by(actions.c.at)).mappings()
            return [dict(row) for row in rows]

    # --- the QA sample ---------------------------------------------------------------------------

    def add_qa_sample(self, row: QaSampleRow) -> bool:
        """A sampled ticket into the QA queue; the same ticket again changes nothing."""
        values = asdict(row)
        values["decision"] = values.pop("decision_json")
        try:
            with self.engine.begin() as db:
                db.execute(qa_samples.insert().values(**values, arrived_at=time.time()))
            return True
        except IntegrityError:
            return False

    def qa_samples(self, grant: frozenset[str] | None, *, week: str = "", ticket_id: str = "",
                   limit: int = 500) -> list[dict]:
        """Samples among the granted tenants' ones (of one week), each with the class it was marked
        with, who marked it and when ("" / None while unmarked), unmarked first, newest week first."""
        marks = (sa.select(actions.c.ticket_id, actions.c.qa_class, actions.c.agent, actions.c.at)
                 .where(actions.c.kind == QA_SEVERITY).subquery())
        query = (sa.select(qa_samples.c.ticket_id, qa_samples.c.tenant, qa_samples.c.week, qa_samples.c.decision,
                           sa.func.coalesce(marks.c.qa_class, "").label("qa_class"),
                           sa.func.coalesce(marks.c.agent, "").label("marked_by"), marks.c.at.label("marked_at"))
                 .select_from(qa_samples.outerjoin(marks, marks.c.ticket_id == qa_samples.c.ticket_id)))
        if grant is not None:
            query = query.where(qa_samples.c.tenant.in_(sorted(grant)))
        if week:
            query = query.where(qa_samples.c.week == week)
        if ticket_id:
            query = query.where(qa_samples.c.ticket_id == ticket_id)
        query = query.order_by(marks.c.qa_class.is_not(None), qa_samples.c.week.desc(), qa_samples.c.ticket_id).limit(limit)
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(query).mappings()]

    def qa_sample(self, ticket_id: str, grant: frozenset[str] | None) -> dict | None:
        found = self.qa_samples(grant, ticket_id=ticket_id, limit=1) if ticket_id else []
        return found[0] if found else None

    def qa_weeks(self, grant: frozenset[str] | None) -> list[str]:
        query = sa.select(qa_samples.c.week).distinct().order_by(qa_samples.c.week.desc()).limit(60)
        if grant is not None:
            query = query.where(qa_samples.c.tenant.in_(sorted(grant)))
        with self.engine.connect() as db:
            return [w for (w,) in db.execute(query)]

    # --- proposed actions ------------------------------------------------------------------------

    def add_proposal(self, change: ProposalRow | ProposalOutcome) -> bool:
        """A new proposal, or the outcome of one (an outcome for an unknown proposal changes nothing)."""
        with self.engine.begin() as db:
            if isinstance(change, ProposalOutcome):
                return db.execute(proposals.update().where(proposals.c.proposal_id == change.proposal_id)
                                  .values(outcome=change.outcome, outcome_reason=change.reason)).rowcount == 1
            values = asdict(change)
            values["params"] = values.pop("params_json")
            if db.execute(sa.select(proposals.c.proposal_id).where(proposals.c.proposal_id == change.proposal_id)).first():
                return False
            db.execute(proposals.insert().values(**values))
            return True

    def proposals(self, ticket_id: str) -> list[dict]:
        """The ticket's proposals, oldest first, each with the agent's answer (`answered`: the kind,
        `answered_by`) if any."""
        answers = (sa.select(actions.c.proposal_id, actions.c.kind, actions.c.agent)
                   .where(actions.c.kind.in_((CONFIRM_ACTION, DECLINE_ACTION))).subquery())
        query = (sa.select(proposals, sa.func.coalesce(answers.c.kind, "").label("answered"),
                           sa.func.coalesce(answers.c.agent, "").label("answered_by"))
                 .select_from(proposals.outerjoin(answers, answers.c.proposal_id == proposals.c.proposal_id))
                 .where(proposals.c.ticket_id == ticket_id).order_by(proposals.c.proposed_at))
        with self.engine.connect() as db:
            rows = [dict(row) for row in db.execute(query).mappings()]
        for row in rows:
            row["params"] = json.loads(row["params"] or "{}")
        return rows

    def proposal(self, ticket_id: str, proposal_id: str) -> Proposal | None:
        for row in self.proposals(ticket_id):
            if row["proposal_id"] == proposal_id:
                return Proposal(row["proposal_id"], row["ticket_id"], row["tool"], row["answered"], row["outcome"])
        return None

    # --- routing overrides -----------------------------------------------------------------------

    def add_override(self, row: dict) -> bool:
        try:
            with self.engine.begin() as db:
                db.execute(routing_overrides.insert().values(**row))
            return True
        except IntegrityError:  # the same override again
            return False

    def overrides(self, grant: frozenset[str] | None, limit: int = 200) -> list[dict]:
        """Overrides newest first, of the granted tenants and those for every tenant."""
        query = sa.select(routing_overrides).order_by(routing_overrides.c.at.desc()).limit(limit)
        if grant is not None:
            query = query.where(routing_overrides.c.tenant.in_([*sorted(grant), ALL_TENANTS]))
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(query).mappings()]

    # --- the audit log ---------------------------------------------------------------------------

    def audit(self, actor: str, event: str, *, ticket_id: str = "", detail: str = "", address: str = "") -> None:
        with self.engine.begin() as db:
            db.execute(audit_log.insert().values(at=time.time(), actor=actor[:200], event=event, ticket_id=ticket_id[:200],
                                                 detail=detail[:2000], address=address[:64]))

    def audit_entries(self, limit: int = 100) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)).mappings()
            return [dict(row) for row in rows]
