"""The retriever against the real Weaviate: ingest and search, idempotent re-ingest, delete, tenant
isolation, and Weaviate going away (UNAVAILABLE, no hang) and coming back (recovery).

Each test module works in collections of its own, dropped at the end, so it never touches the
service's collections. Outages are simulated with TCP proxies in front of the real server: the
client talks to the proxies, and the test cuts or black-holes them.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import grpc
import numpy as np
import pytest
import weaviate
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from encoders.embedding import load_encoder
from tooling.fleet import free_port
from supportflow.observability import Health
from supportflow.rpc import create_server, open_channel

from services.retriever.articles import KnowledgeArticle, chunk_article
from services.retriever.components import build_components
from services.retriever.search import SearchFilters
from services.retriever.servicer import RetrieverServicer

pytestmark = pytest.mark.infra

LONG = " ".join(["Please read the whole section before you contact support."] * 6)


def article(article_id: str, title: str, sections: dict[str, str], **metadata) -> KnowledgeArticle:
    content = "\n\n".join(f"## {heading}\n{body} {LONG}" for heading, body in sections.items())
    return KnowledgeArticle(article_id, title, content, **metadata)


KB = [
    article("fees-foreign", "Foreign transaction fees", {
        "Card payments abroad": "Card payments in a foreign currency cost a 2% foreign transaction fee.",
        "Cash withdrawals abroad": "Withdrawing cash abroad costs $3 per withdrawal plus 2%.",
    }, is_policy=True, source="help_center"),
    article("card-arrival", "When will my card arrive?", {
        "Delivery times": "New cards arrive within 5 to 7 business days by post.",
        "Tracking": "You can track the delivery in the app under Cards > Delivery.",
    }, intents=("card_arrival", "card_delivery_estimate")),
    article("lost-card", "Lost or stolen card", {
        "Freeze your card": "Freeze the card in the app immediately if it is lost or stolen.",
        "Order a replacement": "A replacement card is free once a year.",
    }, source="internal_policy"),
    article("savings-rates", "Savings interest rates", {
        "Rates": "The Gold savings account pays 4.1% APY on balances up to $50,000.",
    }, is_policy=True, review_by=None, locale="de"),
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("minilm")


@pytest.fixture
def parts(settings, encoder):
    suffix = uuid.uuid4().hex[:8]
    components = build_components(settings, encoder=encoder, kb_collection=f"TestKb{suffix}",
                                  cases_collection=f"TestCases{suffix}", query_timeout_s=5.0)
    yield components
    with weaviate.connect_to_custom(http_host=settings.weaviate_http_host, http_port=settings.weaviate_http_port,
                                    http_secure=False, grpc_host=settings.weaviate_http_host,
                                    grpc_port=settings.weaviate_grpc_port, grpc_secure=False) as client:
        client.collections.delete([f"TestKb{suffix}", f"TestCases{suffix}"])
    components.close()


def test_ingest_then_search_finds_the_right_article(parts):
    report = parts.knowledge.upsert("acme", KB)
    assert report.articles == len(KB)
    assert parts.knowledge.count("acme") == report.chunks == sum(len(chunk_article(a)) for a in KB)

    result = parts.searcher.search("acme", "I paid with my card in euros and was charged a fee", 3)
    assert result.articles[0].article_id == "fees-foreign"
    assert not result.gap
    best = result.articles[0].passages[0]
    assert "foreign" in best.text.lower() and best.section and best.title == "Foreign transaction fees"
    assert best.is_policy and best.url == "" and best.source == "help_center"

    assert parts.searcher.search("acme", "my new card has not arrived yet", 1).articles[0].article_id == "card-arrival"


def test_metadata_the_kb_does_not_carry_stays_unknown_in_the_index(parts):
    from dataclasses import replace

    from services.retriever.articles import KnowledgePolicy

    bare = article("bare", "Wire transfers", {"Sending": "A wire transfer costs a fee of 25 dollars."})
    marked = article("marked", "Cheque deposits", {"Depositing": "Cheques clear in 3 days."}, is_policy=False)
    parts.knowledge.upsert("acme", [bare, marked])
    default = {a.article_id: a for a in parts.searcher.search("acme", "wire transfer fee, cheque deposit", 2).articles}
    assert not default["bare"].stale and default["bare"].passages[0].is_policy is False  # no tenant file: the defaults
    careful = replace(parts.searcher, knowledge_policy=lambda tenant: KnowledgePolicy("hold", "canonical"))
    by_id = {a.article_id: a for a in careful.search("acme", "wire transfer fee, cheque deposit", 2).articles}
    assert by_id["bare"].stale and by_id["bare"].passages[0].is_policy is True  # null in the index: unknown, not false
    assert by_id["marked"].passages[0].is_policy is False  # stated false stays false
    assert (by_id["bare"].passages[0].url, by_id["bare"].passages[0].owner, by_id["bare"].passages[0].review_by) == ("", "", None)


def test_warming_loads_a_tenants_chunks_so_a_fresh_retriever_fetches_none(parts, settings, encoder):
    parts.knowledge.upsert("acme", KB)
    chunks = parts.knowledge.count("acme")
    fresh = build_components(settings, encoder=encoder, kb_collection=parts.knowledge.collection_name,
                             cases_collection=parts.cases.collection_name, query_timeout_s=5.0)
    try:
        assert fresh.knowledge.warm("acme", page_size=2) == chunks  # several pages
        assert fresh.knowledge.warm("nobody") == 0  # a tenant that holds nothing
        fetched = []
        fresh.knowledge._read = lambda *args, **kwargs: fetched.append(args) or []  # any fetch would show
        result = fresh.searcher.search("acme", "I paid with my card in euros and was charged a fee", 3)
        assert result.articles[0].article_id == "fees-foreign" and fetched == []
    finally:
        fresh.close()


def test_filters_restrict_sources_policy_and_locale(parts):
    parts.knowledge.upsert("acme", KB)
    query = "card fees rates lost card delivery"
    only_internal = parts.searcher.search("acme", query, 10, filters=SearchFilters(sources=("internal_policy",)))
    assert {a.article_id for a in only_internal.articles} == {"lost-card"}
    policy = parts.searcher.search("acme", query, 10, filters=SearchFilters(policy_only=True))
    assert {a.article_id for a in policy.articles} == {"fees-foreign", "savings-rates"}
    german = parts.searcher.search("acme", query, 10, filters=SearchFilters(locale="de"))
    assert {a.article_id for a in german.articles} == {"savings-rates"}


def test_direct_grpc_searches_rank_as_weaviate_client_does(parts):
    """The hot path calls Weaviate's gRPC Search itself: same ids and scores as the client's own
    hybrid, BM25 and vector queries, filters included."""
    parts.knowledge.upsert("acme", KB)
    collection = parts.connection.run(lambda client: client.collections.use(parts.knowledge.collection_name)
                                      .with_tenant("acme"))
    vector = parts.encoder.encode(["lost card and foreign fees"])[0]
    keywords = "card fees lost savings rates"
    metadata = MetadataQuery(score=True, distance=True)

    def client_ranking(objects, score):
        return [(o.properties["chunk_id"], round(score(o.metadata), 5)) for o in objects]

    def ranking(hits):
        return [(h.chunk_id, round(h.score, 5)) for h in hits]

    expected_hybrid = client_ranking(collection.query.hybrid(
        query=keywords, vector=vector.tolist(), alpha=0.7, limit=20, query_properties=["title", "section", "text"],
        fusion_type=HybridFusion.RELATIVE_SCORE, return_metadata=metadata).objects, lambda m: m.score)
    assert len(expected_hybrid) > 3
    assert ranking(parts.knowledge.hybrid("acme", keywords, vector, alpha=0.7, limit=20)) == expected_hybrid
    for where, filters in (
        (Filter.by_property("is_policy").equal(True) & Filter.by_property("locale").equal("en"),
         SearchFilters(locale="en", policy_only=True)),
        (Filter.by_property("source").contains_any(["internal_policy"]), SearchFilters(sources=("internal_policy",))),
        (Filter.by_property("intents").contains_any(["card_arrival", "lost_card"]),
         SearchFilters(intents=("card_arrival", "lost_card"))),
    ):
        expected_bm25 = client_ranking(collection.query.bm25(
            query=keywords, limit=20, query_properties=["title", "section", "text"], filters=where,
            return_metadata=metadata).objects, lambda m: m.score)
        assert 0 < len(expected_bm25) < len(expected_hybrid)
        assert ranking(parts.knowledge.bm25("acme", keywords, limit=20, filters=filters)) == expected_bm25
    expected_nearest = client_ranking(collection.query.near_vector(
        near_vector=vector.tolist(), limit=20, return_metadata=metadata).objects, lambda m: 1 - m.distance)
    assert ranking(parts.knowledge.near_vector("acme", vector, limit=20)) == expected_nearest


def test_reingest_is_idempotent_and_shrinking_an_article_drops_its_old_chunks(parts):
    parts.knowledge.upsert("acme", KB)
    first = parts.knowledge.count("acme")
    parts.knowledge.upsert("acme", KB)
    assert parts.knowledge.count("acme") == first

    fees = KB[0]
    before = parts.knowledge.count("acme", "fees-foreign")
    assert before > 1
    # Searched once first: the retriever now holds the old chunk's text in memory.
    old = parts.searcher.search("acme", "foreign transaction fee", 1).articles[0].passages[0]
    assert old.article_id == "fees-foreign" and old.text != "The foreign transaction fee is now 1%."
    shorter = KnowledgeArticle(fees.article_id, fees.title, "The foreign transaction fee is now 1%.")
    report = parts.knowledge.upsert("acme", [shorter])
    assert report.stale_chunks_deleted == before - 1
    assert parts.knowledge.count("acme", "fees-foreign") == 1
    passage = parts.searcher.search("acme", "foreign transaction fee", 1).articles[0].passages[0]
    assert passage.text == "The foreign transaction fee is now 1%."


def test_delete_removes_every_chunk_of_the_article(parts):
    parts.knowledge.upsert("acme", KB)
    removed = parts.knowledge.delete("acme", "lost-card")
    assert removed == len(chunk_article(KB[2]))
    assert parts.knowledge.count("acme", "lost-card") == 0
    hits = parts.searcher.search("acme", "my card was stolen, how do I freeze it", 10)
    assert "lost-card" not in {a.article_id for a in hits.articles}
    assert parts.knowledge.delete("acme", "lost-card") == 0  # deleting again is harmless
    assert parts.knowledge.delete("never-ingested", "lost-card") == 0


def test_tenants_never_see_each_other(parts):
    # Same subjects, different ids: a leak would show up as a foreign id in the results.
    acme = [KnowledgeArticle(f"acme-{a.article_id}", a.title, a.content) for a in KB]
    globex = [KnowledgeArticle(f"globex-{a.article_id}", a.title, a.content + " Globex edition.") for a in KB]
    parts.knowledge.upsert("acme", acme)
    parts.knowledge.upsert("globex", globex)
    queries = ["foreign transaction fee", "card delivery time", "lost card", "savings interest",
               "Globex edition", "acme", "anything at all"]
    for query in queries:
        for tenant, prefix in (("acme", "acme-"), ("globex", "globex-")):
            ids = {a.article_id for a in parts.searcher.search(tenant, query, 10).articles}
            assert ids and all(i.startswith(prefix) for i in ids), (tenant, query, ids)
            assert all(h.article_id.startswith(prefix) for h in parts.knowledge.bm25(tenant, query, limit=50))
    # The same article id in two tenants: each sees its own text (ids alone would not tell).
    parts.knowledge.upsert("acme", [KnowledgeArticle("shared-faq", "Opening hours", "Acme branches open at 9.")])
    parts.knowledge.upsert("globex", [KnowledgeArticle("shared-faq", "Opening hours", "Globex branches open at 10.")])
    for tenant, text in (("acme", "Acme branches open at 9."), ("globex", "Globex branches open at 10.")):
        for _ in range(2):  # the second search is served from the retriever's chunk cache
            top = parts.searcher.search(tenant, "branch opening hours", 1).articles[0]
            assert (top.article_id, top.passages[0].text) == ("shared-faq", text)
    # Deleting in one tenant leaves the other alone.
    parts.knowledge.delete("acme", "acme-card-arrival")
    assert parts.knowledge.count("globex", "globex-card-arrival") > 0


def test_a_tenant_without_an_index_gets_an_empty_result(parts):
    parts.knowledge.upsert("acme", KB)
    result = parts.searcher.search("nobody", "foreign transaction fee", 5)
    assert result.articles == () and result.gap
    assert parts.knowledge.count("nobody") == 0


def test_similar_cases_are_found_per_tenant(parts):
    from services.retriever.search import DEFAULT_CASE_MIN_SIMILARITY, ResolvedCase, find_similar_cases

    parts.cases.upsert("acme", ResolvedCase("t1", "Card declined at a petrol station abroad", "Travel block lifted", "declined_card_payment"))
    parts.cases.upsert("acme", ResolvedCase("t2", "Cannot log in after changing phone", "Re-registered the device", "passcode_forgotten"))
    parts.cases.upsert("acme", ResolvedCase("t1", "Card declined at a petrol station abroad", "Block lifted, card re-issued", "declined_card_payment"))
    hits = find_similar_cases(parts.cases, parts.encoder, "acme", "my card got declined at a gas station in Spain", 2)
    assert [h.case.ticket_id for h in hits] == ["t1"]  # t2 is the next nearest, but nothing alike
    assert hits[0].case.resolution_notes == "Block lifted, card re-issued"  # resolved again: replaced
    assert hits[0].similarity >= DEFAULT_CASE_MIN_SIMILARITY
    unfloored = find_similar_cases(parts.cases, parts.encoder, "acme", "my card got declined at a gas station in Spain", 2,
                                   min_similarity=0.0)
    assert [h.case.ticket_id for h in unfloored] == ["t1", "t2"]
    assert unfloored[1].similarity < DEFAULT_CASE_MIN_SIMILARITY
    assert find_similar_cases(parts.cases, parts.encoder, "globex", "card declined", 2) == []


def test_keep_only_deletes_every_other_case_of_the_tenant_alone(parts):
    from services.retriever.search import ResolvedCase

    history = [ResolvedCase(f"case-{i}", f"Card problem number {i}", "Sorted", "card_not_working") for i in range(3)]
    later = [ResolvedCase(f"demo-{i}", f"Top-up problem number {i}", "Sorted", "top_up_failed") for i in range(4)]
    parts.cases.upsert_many("acme", history + later)
    parts.cases.upsert_many("globex", later)
    assert parts.cases.keep_only("acme", [case.ticket_id for case in history]) == 4
    assert parts.cases.count("acme") == 3 and parts.cases.count("globex") == 4
    assert parts.cases.keep_only("acme", [case.ticket_id for case in history]) == 0  # nothing left to delete
    assert parts.cases.keep_only("initech", ["case-0"]) == 0  # a tenant with no cases
    assert parts.cases.keep_only("globex", []) == 4  # keeping none: every case of the tenant goes
    assert parts.cases.count("globex") == 0 and parts.cases.count("acme") == 3


def test_similar_case_search_reads_what_the_client_reads(parts):
    """The case search calls Weaviate's gRPC Search itself too: the same cases, fields, scores and
    vectors (hence similarities) as the client's own hybrid query."""
    from services.retriever.search import ResolvedCase

    cases = [
        ResolvedCase("t1", "Card declined at a petrol station abroad", "Travel block lifted", "declined_card_payment",
                     ("travel-notice", "card-blocks")),
        ResolvedCase("t2", "Cannot log in after changing phone", "Re-registered the device", "passcode_forgotten"),
        ResolvedCase("t3", "Card payment declined online", "3-D Secure was off; turned it on", ""),
    ]
    parts.cases.upsert_many("acme", cases)
    vector = parts.encoder.encode(["my card was declined"])[0]
    hits = parts.cases.search("acme", "card declined", vector, k=3, alpha=0.7)
    collection = parts.connection.run(lambda client: client.collections.use(parts.cases.collection_name)
                                      .with_tenant("acme"))
    objects = collection.query.hybrid(
        query="card declined", vector=vector.tolist(), alpha=0.7, limit=3,
        query_properties=["problem_statement", "resolution_notes"], fusion_type=HybridFusion.RELATIVE_SCORE,
        return_metadata=MetadataQuery(score=True), include_vector=True,
    ).objects
    assert [h.case.ticket_id for h in hits] == [o.properties["ticket_id"] for o in objects]
    assert {h.case.ticket_id: h.case for h in hits} == {c.ticket_id: c for c in cases}
    assert [round(h.score, 5) for h in hits] == [round(o.metadata.score, 5) for o in objects]
    expected = [float(np.dot(vector, o.vector["default"]) / np.linalg.norm(o.vector["default"]) / np.linalg.norm(vector))
                for o in objects]
    assert [h.similarity for h in hits] == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# Weaviate going away and coming back


class TcpProxy:
    """Forwards a local port to the real server; `cut()` closes everything, `blackhole()` accepts
    connections but never answers, `restore()` forwards again (on the same port)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.target_port = host, target_port
        self.port = free_port()  # below the ephemeral range: restore() binds it again after cut()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._forward = True
        self._lock = threading.Lock()

    def restore(self) -> None:
        self._forward = True
        if self._listener is None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(64)
            self._listener = listener
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def blackhole(self) -> None:
        self._drop_connections()
        self._forward = False

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        self._drop_connections()

    def _drop_connections(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            if not self._forward:
                continue  # held open, never answered
            try:
                upstream = socket.create_connection((self.host, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def proxied(settings, encoder):
    """(retriever stub, http proxy, grpc proxy) with the retriever reaching Weaviate via proxies."""
    http, grpc_proxy = TcpProxy(settings.weaviate_http_port), TcpProxy(settings.weaviate_grpc_port)
    http.restore()
    grpc_proxy.restore()
    suffix = uuid.uuid4().hex[:8]
    proxied_settings = settings.replace(weaviate_http_port=http.port, weaviate_grpc_port=grpc_proxy.port)
    components = build_components(proxied_settings, encoder=encoder, kb_collection=f"TestKb{suffix}",
                                  cases_collection=f"TestCases{suffix}")
    components.knowledge.upsert("acme", KB[:2])
    servicer = RetrieverServicer(components.searcher, components.cases, components.encoder)
    server, port = create_server(
        "retriever-test", [(services_pb2_grpc.add_RetrieverServicer_to_server, servicer, "supportflow.contracts.v1.Retriever")],
        Health("retriever-test"), 0, host="127.0.0.1",
    )
    server.start()
    stub = services_pb2_grpc.RetrieverStub(open_channel("retriever-test", f"127.0.0.1:{port}", 5.0))
    yield stub, http, grpc_proxy
    server.stop(grace=0)
    http.restore()
    grpc_proxy.restore()
    components.close()
    with weaviate.connect_to_custom(http_host=settings.weaviate_http_host, http_port=settings.weaviate_http_port,
                                    http_secure=False, grpc_host=settings.weaviate_http_host,
                                    grpc_port=settings.weaviate_grpc_port, grpc_secure=False) as client:
        client.collections.delete([f"TestKb{suffix}", f"TestCases{suffix}"])
    http.cut()
    grpc_proxy.cut()


REQUEST = services_pb2.SearchRequest(tenant_id="acme", query="foreign transaction fee on card payments", k=3)


def search_until_ok(stub, attempts: int = 40) -> services_pb2.SearchResponse:
    for _ in range(attempts):
        try:
            return stub.Search(REQUEST, timeout=5.0)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            time.sleep(0.25)
    raise AssertionError("the retriever did not recover after Weaviate came back")


@pytest.mark.parametrize("outage", ["cut", "blackhole"])
def test_weaviate_outage_is_unavailable_and_the_retriever_recovers(proxied, outage):
    stub, http, grpc_proxy = proxied
    assert stub.Search(REQUEST, timeout=5.0).passages[0].article_id == "fees-foreign"

    for proxy in (http, grpc_proxy):
        getattr(proxy, outage)()
    for _ in range(3):  # every call fails fast with UNAVAILABLE, within the caller's deadline
        with pytest.raises(grpc.RpcError) as failure:
            stub.Search(REQUEST, timeout=5.0)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "knowledge base unavailable" in failure.value.details()

    http.restore()
    grpc_proxy.restore()
    response = search_until_ok(stub)
    assert response.passages[0].article_id == "fees-foreign"
