"""The workspace store and the delivery ledger on a real PostgreSQL server (the session's throwaway
cluster, `postgres_url`), doing what the unit tests do with SQLite: the workspace migrates an empty
database, keeps decisions, serves the queue and the ticket view, records an approval and refuses a
second one; the ledger claims, finishes and reconciles a decision; two ledgers on one database (two
replicas) see each other's rows. Each test gets a database of its own."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta

from services.delivery.ledger import DONE, FAILED, STARTED, Claim, DeliveryLedger
from services.workspace.auth import User, hash_password, token_digest
from services.workspace.desk import ActionDesk, TicketNotFound
from services.workspace.handlers import (
    ActionRefused,
    ActionRequest,
    action_record,
    agent_action,
    decision_from_json,
    delivery_row,
    queue_row,
    ticket_view,
)
from services.workspace.main import QueueFeed
from services.workspace.models import metadata as workspace_metadata
from services.workspace.store import WorkspaceStore
from tests.unit.test_delivery_handlers import TENANT as LEDGER_TENANT
from tests.unit.test_delivery_handlers import decided as ledger_decided
from tests.unit.test_delivery_handlers import plan_for
from tests.unit.test_delivery_ledger import POSTED, ZendeskScript, deliverer
from tests.unit.test_workspace_web import OTHER_TENANT, TENANT, RecordingPublisher, decided


@pytest.fixture
def database_url(postgres_url: str):
    """A new, empty database on the session's server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(sa.make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def store(database_url: str):
    store = WorkspaceStore(database_url)
    yield store
    store.close()


def fill(store: WorkspaceStore) -> None:
    for event in (decided("zd-1"), decided("zd-2", urgency=tk.URGENCY_CRITICAL, received=1_600_000_000),
                  decided("zd-3", received=1_700_000_500), decided("nc-1", OTHER_TENANT),
                  decided("zd-9", decision=ev.DECISION_ESCALATE)):
        assert store.upsert_ticket(queue_row(event))


# --- the workspace store ----------------------------------------------------------------------------


def test_the_workspace_migrates_an_empty_database_to_the_models_schema(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == []
    engine.dispose()
    store = WorkspaceStore(database_url)
    with store.engine.connect() as connection:
        assert connection.dialect.name == "postgresql"
        assert compare_metadata(MigrationContext.configure(connection), workspace_metadata) == []
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    again = WorkspaceStore(database_url)  # a second replica (or a restart): nothing to migrate, the same id
    assert again.workspace_id == store.workspace_id and len(store.workspace_id) == 32
    again.close()
    store.close()


def test_users_and_tokens(store: WorkspaceStore) -> None:
    user_id = store.create_user("ana", "$argon2id$not-a-real-hash", "agent", [TENANT, TENANT])
    assert store.user_count() == 1 and store.user_by_name("ana")["tenants"] == TENANT
    assert store.add_token(token_digest("tok"), user_id) and not store.add_token(token_digest("tok"), user_id)
    assert store.user_by_token(token_digest("tok"))["id"] == user_id
    store.set_password_hash(user_id, "$argon2id$other")
    assert store.user_by_id(user_id)["password_hash"] == "$argon2id$other"
    with pytest.raises(sa.exc.IntegrityError):
        store.create_user("ana", "x", "agent", "*")


def test_decisions_make_the_queue_most_urgent_then_newest_first_per_granted_tenant(store: WorkspaceStore) -> None:
    fill(store)
    grant = frozenset({TENANT})
    assert [row["ticket_id"] for row in store.queue(grant, {})] == ["zd-2", "zd-3", "zd-1", "zd-9"]
    assert [row["ticket_id"] for row in store.queue(None, {"queue": "escalated"})] == ["zd-9"]
    assert {row["ticket_id"] for row in store.queue(None, {})} == {"zd-1", "zd-2", "zd-3", "zd-9", "nc-1"}
    assert store.counts(grant) == {"review": 3, "escalated": 1, "follow_up": 0}
    assert store.filter_values(grant)["tenant"] == [TENANT]
    assert store.filter_values(None)["tenant"] == sorted([TENANT, OTHER_TENANT])
    assert store.ticket("nc-1", grant) is None and store.ticket("nc-1", None)["tenant"] == OTHER_TENANT
    # The same decision again changes nothing; a newer one on the same ticket replaces it.
    assert not store.upsert_ticket(queue_row(decided("zd-1")))
    newer = decided("zd-1")
    newer.meta.event_id = "decision-zd-1-again"
    newer.timeline.decided_at.seconds += 100
    assert store.upsert_ticket(queue_row(newer))
    assert store.ticket("zd-1", None)["decision_event_id"] == "decision-zd-1-again"


def test_the_ticket_view_from_the_store(store: WorkspaceStore) -> None:
    fill(store)
    recorded = ev.DeliveryRecorded(
        meta=ev.EventMeta(event_id="e" * 32), ticket_id="zd-1", decision_event_id="decision-zd-1",
        decision=ev.DECISION_REVIEW, kind=ev.DELIVERY_KIND_NOTE, provider="zendesk", external_ticket_id="1001",
        external_id="c-55", status=ev.DELIVERY_STATUS_DELIVERED, attempts=1, text="Draft for review",
        citations=[tk.Citation(article_id="a1", title="Cards", passage="5 working days")],
    )
    recorded.delivered_at.seconds = 1_700_000_100
    assert store.add_delivery(delivery_row(recorded)) and not store.add_delivery(delivery_row(recorded))
    row = store.ticket("zd-1", frozenset({TENANT}))
    view = ticket_view(decision_from_json(row["decision"]), status=row["status"], queue=row["queue"],
                       deliveries=store.deliveries("zd-1"), actions=store.actions("zd-1"))
    assert (view["subject"], view["status"], view["decision"]) == ("Card?", "open", "review")
    assert view["draft"]["text"].startswith("Hello,") and view["citations"][0]["passage"] == "5 working days"
    assert view["delivered"][0]["kind"] == "note" and view["delivered"][0]["external_id"] == "c-55"


def test_an_approval_is_recorded_once_and_a_second_one_is_refused(store: WorkspaceStore) -> None:
    fill(store)
    publisher = RecordingPublisher()
    desk = ActionDesk(store, publisher)
    ana = User(id=1, username="ana", role="agent", grant=frozenset({TENANT}))
    acted = desk.act(ana, "zd-1", ActionRequest("approve"), address="127.0.0.1")
    assert acted.status == "sent" and store.ticket("zd-1", None)["status"] == "sent"
    assert [a["action_id"] for a in store.actions("zd-1")] == [acted.action_id]
    assert any(e["event"] == "action" and e["ticket_id"] == "zd-1" for e in store.audit_entries())
    with pytest.raises(ActionRefused) as refused:
        desk.act(ana, "zd-1", ActionRequest("approve"))
    assert refused.value.status == 409 and len(publisher.published) == 1 and len(store.actions("zd-1")) == 1
    with pytest.raises(TicketNotFound):
        desk.act(ana, "nc-1", ActionRequest("approve"))  # another tenant's ticket
    # The same action read back from agent.actions by the consumer counts once.
    (_, _, event) = publisher.published[0]
    assert not store.record_action(action_record(event, 1.0), "sent", audit=False)
    assert len(store.actions("zd-1")) == 1


def test_a_rebuilt_queue_keeps_what_agents_did(store: WorkspaceStore) -> None:
    action = agent_action(ActionRequest("approve"), decided("zd-1"), "open", "ana").event
    feed = QueueFeed(store)
    feed.on_agent_action(action)  # before its decision: the action makes the ticket
    feed.on_decided(decided("zd-1"))
    feed.on_agent_action(action)
    assert store.ticket("zd-1", None)["status"] == "sent" and len(store.actions("zd-1")) == 1


def test_the_issue_24_tables_on_postgres(store: WorkspaceStore) -> None:
    """Reassign, a confirmed proposal, a redraft, a marked QA sample and an override, on PostgreSQL."""
    fill(store)
    store.create_user("ana", hash_password("ana-password-1"), "agent", [TENANT])
    store.create_user("bo", hash_password("bo-password-12"), "agent", [TENANT])
    lee_id = store.create_user("lee", hash_password("lee-password-1"), "lead", [TENANT])
    store.update_user(store.user_by_name("bo")["id"], disabled=True)
    assert store.usernames_granted(TENANT) == ["ana", "lee"]
    publisher = RecordingPublisher()
    desk = ActionDesk(store, publisher)
    ana = User(id=1, username="ana", role="agent", grant=frozenset({TENANT}))
    lee = User(id=lee_id, username="lee", role="lead", grant=frozenset({TENANT}))
    desk.act(ana, "zd-1", ActionRequest("reassign", assignee="lee"))
    assert store.ticket("zd-1", None)["assignee"] == "lee"
    feed = QueueFeed(store)
    feed.on_action_recorded(ev.ActionRecorded(meta=new_meta(TENANT, "escalator"), ticket_id="zd-1", action_id="p-1",
                                              tool="card_freeze", status=ev.ACTION_STATUS_PROPOSED))
    desk.act(ana, "zd-1", ActionRequest("confirm_action", proposal_id="p-1", confirmation_ref="call 10:02"))
    assert [(p["answered"], p["answered_by"]) for p in store.proposals("zd-1")] == [("confirm_action", "agent:ana")]
    sampled = decided("zd-s", decision=ev.DECISION_RESPOND)
    feed.on_qa_sample(ev.QaSampleRequested(meta=new_meta(TENANT, "learner"), ticket_id="zd-s", week="2026-W49",
                                           decision=sampled))
    desk.mark_qa(lee, "zd-s", "none")
    (sample,) = store.qa_samples(frozenset({TENANT}))
    assert (sample["qa_class"], sample["marked_by"], store.qa_weeks(None)) == ("none", "agent:lee", ["2026-W49"])
    feed.on_routing_override(ev.RoutingOverride(meta=new_meta("", "learner"), override_id="o-1",
                                                archetype=tk.ARCHETYPE_REPETITIVE, action=ev.OVERRIDE_ACTION_KILL_SWITCH_ON,
                                                issued_by="learner:guardrail"))
    assert [(o["tenant"], o["action"]) for o in store.overrides(frozenset({TENANT}))] == [("*", "kill_switch_on")]
    assert store.revoke_token(token_digest("nothing")) is None


# --- the delivery ledger ----------------------------------------------------------------------------

CLAIM = Claim("e1", "zd-1001", LEDGER_TENANT, "zendesk", "reply", "1001")


@pytest.fixture
def ledger(database_url: str):
    ledger = DeliveryLedger(database_url)
    yield ledger
    ledger.close()


def test_the_ledger_claims_finishes_and_fails(ledger: DeliveryLedger) -> None:
    assert ledger.engine.dialect.name == "postgresql"
    assert ledger.claim(CLAIM) is None
    assert ledger.entry("e1").state == STARTED and ledger.entry("e1").runs == 1
    assert ledger.claim(CLAIM).state == STARTED and ledger.entry("e1").runs == 2
    ledger.finish("e1", status="delivered", external_id="555", attempts=3, delivered_at=1_700_000_100.0)
    entry = ledger.entry("e1")
    assert (entry.state, entry.status, entry.external_id, entry.attempts, entry.delivered_at) == (
        DONE, "delivered", "555", 3, 1_700_000_100.0)
    assert ledger.claim(CLAIM).done and ledger.entry("e1").runs == 2
    other = Claim("e2", "zd-2", LEDGER_TENANT, "zendesk", "reply", "2")
    ledger.claim(other)
    ledger.fail("e2", error="zendesk 503", attempts=5)
    assert ledger.claim(other).state == FAILED
    ledger.finish("e2", status="already_delivered", external_id="9", attempts=0, delivered_at=1.0)
    assert ledger.entry("e2").attempts == 5 and ledger.counts() == {DONE: 2}
    with pytest.raises(RuntimeError, match="never claimed"):
        ledger.finish("nope", status="delivered", external_id="", attempts=1, delivered_at=1.0)


def test_the_deliverer_posts_then_reconciles_a_started_decision(ledger: DeliveryLedger) -> None:
    event = ledger_decided()
    (emit,) = deliverer(ledger, ZendeskScript(POSTED), []).on_decided(event)
    assert emit.event.status == ev.DELIVERY_STATUS_DELIVERED and ledger.entry(event.meta.event_id).state == DONE
    # A second decision whose delivery was started by a process that died: read the thread back first.
    started = ledger_decided()
    started.meta.event_id = "s" * 32
    ledger.claim(Claim(started.meta.event_id, "zd-1001", LEDGER_TENANT, "zendesk", "reply", "1001"))
    script = ZendeskScript(httpx.Response(200, json={"comments": [
        {"id": 555, "public": True, "html_body": plan_for(started).message.html}]}))
    (emit,) = deliverer(ledger, script, []).on_decided(started)
    assert emit.event.status == ev.DELIVERY_STATUS_ALREADY_DELIVERED and [r.method for r in script.requests] == ["GET"]
    assert ledger.entry(started.meta.event_id).status == "already_delivered"


def test_two_replicas_share_the_ledger(database_url: str) -> None:
    one, two = DeliveryLedger(database_url), DeliveryLedger(database_url)
    try:
        assert one.claim(CLAIM) is None
        assert two.entry("e1").state == STARTED
        assert two.claim(CLAIM).state == STARTED and one.entry("e1").runs == 2
        two.finish("e1", status="delivered", external_id="555", attempts=1, delivered_at=1.0)
        assert one.claim(CLAIM).done and one.counts() == two.counts() == {DONE: 1}
        # Both replicas claim the same new decision at once: exactly one of them sees it new.
        barrier = threading.Barrier(2)
        results: dict[int, object] = {}

        def claim(index: int, ledger: DeliveryLedger) -> None:
            barrier.wait()
            results[index] = ledger.claim(Claim("e2", "zd-2", LEDGER_TENANT, "zendesk", "reply", "2"))

        threads = [threading.Thread(target=claim, args=(i, ledger)) for i, ledger in enumerate((one, two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results.values(), key=lambda r: r is not None)[0] is None
        assert [r.state for r in results.values() if r is not None] == [STARTED]
        assert one.entry("e2").runs == 2
    finally:
        one.close()
        two.close()
