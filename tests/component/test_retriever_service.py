"""The retriever service as `supportflow run retriever` runs it, against the real Kafka and Weaviate:
article changes and resolved tickets consumed from Kafka, Search and SimilarCases over gRPC, KB gaps
published on `kb.gaps`, bad events dead-lettered, and readiness that follows Weaviate."""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.eventbus import EventPublisher, decode, ensure_topics, new_meta
from tooling.fleet import free_port
from supportflow.rpc import open_channel
from supportflow.service import run_service
from supportflow.topics import Topic

from services.retriever.components import build_components
from services.retriever.search import DEFAULT_CASE_MIN_SIMILARITY
from tests.component.test_retriever_index import TcpProxy
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.infra


def start_retriever(service_settings):
    ensure_topics(service_settings)
    stop = threading.Event()
    exit_code: list[int] = []
    thread = threading.Thread(target=lambda: exit_code.append(run_service("retriever", service_settings, stop)), daemon=True)
    thread.start()
    channel = open_channel("test", f"127.0.0.1:{service_settings.grpc_port}", default_timeout_s=10)
    return stop, thread, exit_code, channel


def stop_retriever(stop, thread, exit_code, channel) -> None:
    channel.close()
    stop.set()
    thread.join(30)
    assert exit_code == [0]


@pytest.fixture
def retriever(settings):
    """(settings, Retriever stub, tenant) for a running service; the tenant is dropped afterwards."""
    service_settings = settings.replace(grpc_port=free_port(), ops_port=0)
    running = start_retriever(service_settings)
    tenant = f"svc-{uuid.uuid4().hex[:10]}"
    yield service_settings, services_pb2_grpc.RetrieverStub(running[3]), tenant
    stop_retriever(*running)
    parts = build_components(settings)
    try:
        parts.knowledge.drop_tenant(tenant)
        parts.cases.drop_tenant(tenant)
    finally:
        parts.close()


def article_changed(tenant: str, article_id: str, title: str, content: str, **fields) -> ev.KbArticleChanged:
    return ev.KbArticleChanged(meta=new_meta(tenant, "cms"), article_id=article_id, title=title, content=content, **fields)


def eventually(probe, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_articles_from_kafka_become_searchable_and_deletions_remove_them(retriever) -> None:
    settings, stub, tenant = retriever
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.KB_ARTICLES, "wire-fees", article_changed(
        tenant, "wire-fees", "International wire fees",
        "## Outgoing wires\nAn outgoing international wire costs $35.\n\n## Incoming wires\nIncoming wires are free.",
        source="help_center", is_policy=True, url="https://help.example/wire-fees"))
    publisher.publish(Topic.KB_ARTICLES, "card-pin", article_changed(
        tenant, "card-pin", "Changing your card PIN", "You can change your PIN at any ATM or in the app."))
    publisher.publish(Topic.KB_ARTICLES, "no-tenant", ev.KbArticleChanged(meta=ev.EventMeta(event_id="x1"), article_id="a"))
    publisher.flush()

    request = services_pb2.SearchRequest(tenant_id=tenant, query="how much is a wire transfer abroad?", k=5)

    def wire_found():
        response = stub.Search(request, wait_for_ready=True)
        return response if response.passages and response.passages[0].article_id == "wire-fees" else None

    response = eventually(wire_found)
    assert response, "the article never became searchable"
    passage = response.passages[0]
    assert passage.is_policy and passage.url == "https://help.example/wire-fees" and "$35" in passage.text
    assert not response.gap
    # Asked with_policy, a search whose best article is not canonical brings the policy article too.
    pin = stub.Search(services_pb2.SearchRequest(tenant_id=tenant, query="How do I change my card PIN?", k=1,
                                                 with_policy=True))
    assert [p.article_id for p in pin.passages] == ["card-pin"] and not pin.passages[0].is_policy
    assert {p.article_id for p in pin.policy} == {"wire-fees"} and all(p.is_policy for p in pin.policy)
    already = services_pb2.SearchRequest(tenant_id=tenant, query="how much is a wire transfer abroad?", k=5,
                                         with_policy=True)
    assert not stub.Search(already).policy  # its results hold the policy article already

    publisher.publish(Topic.KB_ARTICLES, "wire-fees", article_changed(tenant, "wire-fees", "", "", deleted=True))
    publisher.flush()
    gone = eventually(lambda: all(p.article_id != "wire-fees" for p in stub.Search(request).passages))
    assert gone

    dead = read_all(settings, Topic.KB_ARTICLES.dead_letter_in(settings.topic_prefix), expected=1, timeout_s=30)
    assert len(dead) == 1 and dict(dead[0].headers())["sf-dlq-reason"] == b"invalid_event"


def test_resolved_tickets_feed_similar_cases(retriever) -> None:
    settings, stub, tenant = retriever
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.TICKETS_RESOLVED, "t-100", ev.TicketResolved(
        meta=new_meta(tenant, "learner"), ticket_id="t-100", problem_statement="Card declined at a hotel in Lisbon",
        resolution_notes="Fraud hold released after verification", intent="declined_card_payment"))
    publisher.flush()
    request = services_pb2.SimilarCasesRequest(tenant_id=tenant, query="my card was declined at a hotel abroad", k=3)
    response = eventually(lambda: stub.SimilarCases(request, wait_for_ready=True).cases)
    assert [c.ticket_id for c in response] == ["t-100"]
    assert response[0].resolution_notes == "Fraud hold released after verification"
    assert response[0].similarity >= DEFAULT_CASE_MIN_SIMILARITY
    unlike = services_pb2.SimilarCasesRequest(tenant_id=tenant, query="how do I change the language of the app", k=3)
    assert stub.SimilarCases(unlike).cases == []  # the only case is nothing like it


def test_a_search_with_no_relevant_article_publishes_a_kb_gap(retriever) -> None:
    settings, stub, tenant = retriever
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.KB_ARTICLES, "card-pin", article_changed(
        tenant, "card-pin", "Changing your card PIN", "You can change your PIN at any ATM or in the app."))
    publisher.flush()
    # Until the article is indexed these searches find nothing: gaps too, keyed by tenant (no ticket).
    pin = services_pb2.SearchRequest(tenant_id=tenant, query="how do I change my PIN", k=3)
    found = eventually(lambda: (lambda r: r if r.passages else None)(stub.Search(pin, wait_for_ready=True)))
    assert found and not found.gap

    unrelated = services_pb2.SearchRequest(tenant_id=tenant, query="Which gardening tools do you sell for roses?",
                                           k=3, ticket_id="t-gap", intent="shopping")
    response = stub.Search(unrelated)
    assert response.gap and response.best_score < 0.58

    records = read_all(settings, Topic.KB_GAPS.name_in(settings.topic_prefix), expected=1, timeout_s=30)
    gaps = [(m.key().decode(), decode(Topic.KB_GAPS, m)) for m in records]
    assert {key for key, _ in gaps} <= {"t-gap", tenant}
    [gap] = [g for key, g in gaps if key == "t-gap"]
    assert gap.ticket_id == "t-gap" and gap.intent == "shopping" and gap.meta.tenant_id == tenant
    assert "roses" in gap.query and gap.best_score == pytest.approx(response.best_score)


def test_other_tenants_and_missing_tenants_see_nothing(retriever) -> None:
    settings, stub, tenant = retriever
    publisher = EventPublisher(settings, "test")
    publisher.publish(Topic.KB_ARTICLES, "card-pin", article_changed(
        tenant, "card-pin", "Changing your card PIN", "You can change your PIN at any ATM or in the app."))
    publisher.flush()
    assert eventually(lambda: stub.Search(services_pb2.SearchRequest(tenant_id=tenant, query="PIN"), wait_for_ready=True).passages)
    other = stub.Search(services_pb2.SearchRequest(tenant_id=f"other-{uuid.uuid4().hex[:6]}", query="change my PIN"))
    assert list(other.passages) == []
    with pytest.raises(grpc.RpcError) as refused:
        stub.Search(services_pb2.SearchRequest(tenant_id="no spaces allowed", query="PIN"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_readiness_follows_weaviate(settings) -> None:
    http, grpc_proxy = TcpProxy(settings.weaviate_http_port), TcpProxy(settings.weaviate_grpc_port)
    http.restore()
    grpc_proxy.restore()
    service_settings = settings.replace(grpc_port=free_port(), ops_port=0, weaviate_http_port=http.port,
                                        weaviate_grpc_port=grpc_proxy.port)
    running = start_retriever(service_settings)
    health = health_pb2_grpc.HealthStub(running[3])
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING

    def status():
        return health.Check(health_pb2.HealthCheckRequest(service="supportflow.contracts.v1.Retriever"),
                            wait_for_ready=True).status

    try:
        assert eventually(lambda: status() == serving)
        http.cut()
        grpc_proxy.cut()
        assert eventually(lambda: status() == not_serving, timeout_s=30)
        http.restore()
        grpc_proxy.restore()
        assert eventually(lambda: status() == serving, timeout_s=30)
    finally:
        stop_retriever(*running)
        http.cut()
        grpc_proxy.cut()
