"""The delivery ledger: one row per decision (its event id), saying whether its response was
posted. SQLAlchemy Core; SQLite (a file under the cache dir) by default, PostgreSQL in
deployments (`SUPPORTFLOW_DELIVERY_LEDGER_URL`, e.g. postgresql+psycopg://...; the driver must be
in the image).

States:
- started: a delivery began and has not finished. Found like this at the next attempt, the
  process died (or lost its partition) between posting and recording, so the provider may hold
  the message: the thread is read back before posting again (reconciliation).
- done: the channel has the response (status delivered or already_delivered); never posted again.
- failed: the last delivery was refused or ran out of retries and was dead-lettered; a replay of
  the dead letter delivers it again (reconciling first: an ambiguous timeout may have posted it).

Beside the rows, each ticket's channel origin (`remember_ticket` / `ticket`): a message that is no
decision of its own, the result of an action, is posted where the ticket's decisions were.

`claim` is the one write before posting: it returns the row as it was and marks it started,
unless it is done. Every write is one short transaction, so many delivery threads (and replicas,
on PostgreSQL) share the ledger safely; one decision is only ever handled by the replica that owns
its ticket's partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

STARTED = "started"
DONE = "done"
FAILED = "failed"

metadata = sa.MetaData()
deliveries = sa.Table(
    "delivery_ledger",
    metadata,
    sa.Column("decision_event_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("tenant_id", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("external_ticket_id", sa.String(200), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("status", sa.String(32), nullable=False, default=""),  # delivered / already_delivered / failed
    sa.Column("external_id", sa.String(500), nullable=False, default=""),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # provider calls over every run
    sa.Column("runs", sa.Integer, nullable=False, default=0),  # times a delivery started
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("delivered_at", sa.Float, nullable=True),
)
sa.Index("ix_delivery_ledger_ticket", deliveries.c.ticket_id)
# Where each ticket delivered to lives on its channel (a serialized Ticket holding its ids, subject
# and origin, not its text): what a later message on the same ticket, such as the result of an
# action the customer confirmed, is posted to.
ticket_origins = sa.Table(
    "delivery_ticket_origins",
    metadata,
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("tenant_id", sa.String(200), nullable=False),
    sa.Column("ticket", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class LedgerEntry:
    decision_event_id: str
    ticket_id: str
    tenant_id: str
    provider: str
    kind: str
    external_ticket_id: str
    state: str
    status: str
    external_id: str
    attempts: int
    runs: int
    error: str
    started_at: float | None
    finished_at: float | None
    delivered_at: float | None

    @property
    def done(self) -> bool:
        return self.state == DONE


@dataclass(frozen=True)
class Claim:
    """What is about to be delivered."""

    decision_event_id: str
    ticket_id: str
    tenant_id: str
    provider: str
    kind: str
    external_ticket_id: str


class DeliveryLedger:
    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._engine = _engine(url)
        metadata.create_all(self._engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def entry(self, decision_event_id: str) -> LedgerEntry | None:
        with self._engine.connect() as connection:
            return _read(connection, decision_event_id)

    def claim(self, claim: Claim) -> LedgerEntry | None:
        """Mark the decision started, unless it is done; returns its row as it was before (None:
        never seen). The caller posts only when that is not done, and reconciles when it is
        started or failed."""
        now = self._clock()
        for _ in range(2):  # a concurrent first insert loses once, then updates
            with self._engine.begin() as connection:
                before = _read(connection, claim.decision_event_id, for_update=True)
                if before is None:
                    try:
                        connection.execute(deliveries.insert().values(
                            decision_event_id=claim.decision_event_id, ticket_id=claim.ticket_id,
                            tenant_id=claim.tenant_id, provider=claim.provider, kind=claim.kind,
                            external_ticket_id=claim.external_ticket_id, state=STARTED, status="",
                            external_id="", attempts=0, runs=1, error="", started_at=now,
                        ))
                    except IntegrityError:
                        continue
                    return None
                if before.state != DONE:
                    connection.execute(deliveries.update()
                                       .where(deliveries.c.decision_event_id == claim.decision_event_id)
                                       .values(state=STARTED, runs=deliveries.c.runs + 1, started_at=now,
                                               provider=claim.provider, kind=claim.kind,
                                               external_ticket_id=claim.external_ticket_id))
                return before
        raise RuntimeError(f"ledger: cannot claim {claim.decision_event_id}")

    def finish(self, decision_event_id: str, *, status: str, external_id: str, attempts: int, error: str = "",
               delivered_at: float) -> None:
        """The channel acknowledged the response: done for good."""
        self._close(decision_event_id, DONE, status=status, external_id=external_id, attempts=attempts,
                    error=error, delivered_at=delivered_at)

    def fail(self, decision_event_id: str, *, error: str, attempts: int) -> None:
        self._close(decision_event_id, FAILED, status="failed", external_id="", attempts=attempts, error=error,
                    delivered_at=None)

    def _close(self, decision_event_id: str, state: str, *, status: str, external_id: str, attempts: int,
               error: str, delivered_at: float | None) -> None:
        with self._engine.begin() as connection:
            done = connection.execute(
                deliveries.update()
                .where(deliveries.c.decision_event_id == decision_event_id)
                .values(state=state, status=status, external_id=external_id, error=error[:4000],
                        attempts=deliveries.c.attempts + attempts, finished_at=self._clock(), delivered_at=delivered_at)
            )
            if done.rowcount != 1:
                raise RuntimeError(f"ledger: {decision_event_id} was never claimed")

    def remember_ticket(self, ticket_id: str, tenant_id: str, ticket: bytes) -> None:
        """Keep (or refresh) where `ticket_id` lives on its channel."""
        now = self._clock()
        with self._engine.begin() as connection:
            updated = connection.execute(ticket_origins.update().where(ticket_origins.c.ticket_id == ticket_id)
                                         .values(tenant_id=tenant_id, ticket=ticket, updated_at=now))
            if updated.rowcount == 0:
                try:
                    with connection.begin_nested():
                        connection.execute(ticket_origins.insert().values(
                            ticket_id=ticket_id, tenant_id=tenant_id, ticket=ticket, updated_at=now))
                except IntegrityError:
                    pass  # another delivery thread stored the same ticket a moment ago

    def ticket(self, ticket_id: str) -> bytes | None:
        """The ticket as `remember_ticket` kept it; None when nothing was ever delivered on it here."""
        with self._engine.connect() as connection:
            return connection.execute(sa.select(ticket_origins.c.ticket)
                                      .where(ticket_origins.c.ticket_id == ticket_id)).scalar()

    def counts(self) -> dict[str, int]:
        """Rows per state (for reports and tests)."""
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state))
            return {state: count for state, count in rows}

    def close(self) -> None:
        self._engine.dispose()


def _read(connection: sa.Connection, decision_event_id: str, *, for_update: bool = False) -> LedgerEntry | None:
    query = sa.select(deliveries).where(deliveries.c.decision_event_id == decision_event_id)
    if for_update and connection.dialect.name != "sqlite":
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    return LedgerEntry(**row) if row is not None else None


def _engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # Delivery threads share the file: wait for a lock instead of failing at once, and let readers
    # run beside the writer (WAL). IMMEDIATE transactions take the write lock at BEGIN, so a claim's
    # read and write cannot interleave with another thread's.
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        cursor = dbapi_connection.cursor()
        if parsed.database and parsed.database != ":memory:":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
