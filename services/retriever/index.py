"""The Weaviate adapter: knowledge chunks and resolved cases, one Weaviate tenant per Supportflow
tenant.

Isolation comes from Weaviate's multi-tenancy: every read and write names a tenant, a tenant's
objects live in their own shard, and a query against a tenant that does not exist fails (we turn
that into an empty result) instead of falling back to shared data.

Ingest is idempotent: a chunk's UUID is derived from (article id, chunk index), so re-ingesting an
article overwrites its chunks in place, and chunks beyond the new chunk count are deleted after.
Readers never see the article vanish between a delete and an insert.

Failures: every call has a deadline (see WeaviateConnection); a connection-level failure or an
expired deadline becomes `WeaviateUnavailable` and drops the client, which is rebuilt on the next
call (lazily, at most once per `reconnect_interval_s`), so a dead server costs callers a fast
failure, not a hang, and the retriever recovers by itself when the server returns.

Searches (every ticket's evidence, every similar-case lookup) call Weaviate's gRPC `Search`
directly, with the protobuf messages that ship with weaviate-client; the client does the rest
(schema, writes, counts, fetching chunk content by id). On the sample KB, a hybrid query returning
40 ids cost ~3.8 ms of the retriever's CPU through the client (argument checks, a Collection
object per call, a worker thread for the deadline, each result parsed into typed objects) and
costs ~0.9 ms called directly, out of ~20 ms for a whole search; `supportflow kb bench` went from
78-87 to 92-98 queries/s. A case search went from ~3.0 to ~1.3 ms. Two tests
(`test_direct_grpc_searches_rank_as_weaviate_client_does`,
`test_similar_case_search_reads_what_the_client_reads`) check that both read the same.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence, TypeVar

import grpc
import httpx
import numpy as np
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.collections import Collection
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateClosedClientError,
    WeaviateConnectionError,
    WeaviateGRPCUnavailableError,
    WeaviateStartUpError,
    WeaviateTimeoutError,
)
from weaviate.proto.v1 import base_pb2, base_search_pb2, properties_pb2, search_get_pb2, weaviate_pb2_grpc

from services.retriever.articles import Chunk, KnowledgeArticle, chunk_article
from services.retriever.search import (
    CaseHit,
    InvalidTenant,
    PassageHit,
    ResolvedCase,
    SearchFilters,
    StoreUnavailable,
    TextEncoder,
)
from services.retriever.settings import RetrieverSettings

log = logging.getLogger(__name__)

KB_COLLECTION = "SupportflowKbChunk"
CASES_COLLECTION = "SupportflowResolvedCase"
# Fixed namespace for chunk and case UUIDs (uuid5), so ids are stable across processes and runs.
OBJECT_ID_NAMESPACE = uuid.UUID("3f6c1a7e-6a55-4c1e-9a8e-5b1f2f1d7c20")
# Weaviate tenant names allow these characters only; other tenant ids are refused, not rewritten,
# because rewriting could make two Supportflow tenants share one Weaviate tenant.
TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

KB_TEXT_PROPERTIES = ["title", "section", "text"]
# Chunks whose content a retriever keeps in memory (~4 KB each with its vector): the whole sample
# KB is ~2,000.
CHUNK_CACHE_SIZE = 20_000
CASE_TEXT_PROPERTIES = ["problem_statement", "resolution_notes"]


class WeaviateUnavailable(StoreUnavailable):
    """Weaviate did not answer (down, unreachable, timed out)."""


def weaviate_tenant(tenant_id: str) -> str:
    if not TENANT_ID.match(tenant_id or ""):
        raise InvalidTenant(f"tenant id {tenant_id!r} must match {TENANT_ID.pattern}")
    return tenant_id


@dataclass(frozen=True)
class WeaviateAddress:
    http_host: str
    http_port: int
    grpc_port: int
    api_key: str = ""

    @classmethod
    def from_settings(cls, settings: RetrieverSettings) -> "WeaviateAddress":
        return cls(settings.weaviate_http_host, settings.weaviate_http_port, settings.weaviate_grpc_port,
                   settings.weaviate_api_key)


# Errors that mean "the server is not there" rather than "the request is wrong".
_CONNECTION_ERRORS = (
    WeaviateConnectionError,
    WeaviateStartUpError,
    WeaviateGRPCUnavailableError,
    WeaviateTimeoutError,
    WeaviateClosedClientError,
    httpx.TransportError,
    grpc.RpcError,
    OSError,
)
_UNAVAILABLE_MARKERS = ("unavailable", "deadline", "connection refused", "failed to connect", "timed out",
                        "timeout", "socket closed", "connection reset", "closed channel")


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    # ValueError: a call racing a reset finds the client's gRPC channel closed.
    return isinstance(exc, (WeaviateBaseError, ValueError)) and any(m in str(exc).lower() for m in _UNAVAILABLE_MARKERS)


def _names_missing_tenant(message: str) -> bool:
    """Weaviate's error for a tenant or a collection that does not exist (yet)."""
    message = message.lower()
    return "tenant not found" in message or "could not find class" in message


def _is_missing_tenant(exc: BaseException) -> bool:
    return isinstance(exc, WeaviateBaseError) and _names_missing_tenant(str(exc))


# gRPC outcomes of a direct search that mean "the server is not there" (CANCELLED: the channel
# was closed under the call, after another call failed on it or by a reset).
_UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


T = TypeVar("T")


class WeaviateConnection:
    """A lazily (re)connected Weaviate client, shared by threads, whose every call has a deadline.

    The client retries a gRPC call that finds the server unavailable for about a minute (sleeping
    1, 2, 4... s, not configurable in 4.23), which would hold a request thread long after its
    caller gave up. So each call runs on a worker thread and the caller waits at most its deadline;
    on expiry the client is closed, which also ends the abandoned call's retries (its next attempt
    finds the channel closed), and the caller gets WeaviateUnavailable.

    `search` is the exception: it calls Weaviate's gRPC Search on a channel of its own, without
    retries, so the gRPC timeout bounds it and no worker thread is involved.
    """

    def __init__(
        self,
        address: WeaviateAddress,
        *,
        query_timeout_s: float = 1.0,
        insert_timeout_s: float = 60.0,
        init_timeout_s: float = 1.0,
        reconnect_interval_s: float = 0.5,
        workers: int = 16,
    ) -> None:
        self.address = address
        self._timeout = Timeout(init=init_timeout_s, query=query_timeout_s, insert=insert_timeout_s)
        self._query_timeout_s = query_timeout_s
        # A read answers within its gRPC timeout or fails; the margin covers one retry sleep at most.
        self.read_deadline_s = query_timeout_s + 0.5
        self.write_deadline_s = insert_timeout_s + 1.0
        self._connect_deadline_s = 3 * init_timeout_s + 0.5  # REST meta + OIDC probe + gRPC health
        self._reconnect_interval_s = reconnect_interval_s
        self._calls = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="weaviate-call")
        self._client: weaviate.WeaviateClient | None = None
        self._search_channel: grpc.Channel | None = None
        self._search_stub: weaviate_pb2_grpc.WeaviateStub | None = None
        self._grpc_metadata = (("authorization", f"Bearer {address.api_key}"),) if address.api_key else ()
        self._last_attempt = 0.0
        self._last_error = ""
        self._lock = threading.Lock()
        self._prepared: set[str] = set()  # collections known to exist on this connection

    def _connect(self) -> weaviate.WeaviateClient:
        with self._lock:
            if self._client is not None:
                return self._client
            now = time.monotonic()
            if now - self._last_attempt < self._reconnect_interval_s:
                raise WeaviateUnavailable(f"Weaviate unavailable ({self._last_error})")
            self._last_attempt = now
            pending = self._calls.submit(self._open_client)
            try:
                self._client = pending.result(timeout=self._connect_deadline_s)
            except Exception as exc:  # noqa: BLE001 - any start-up failure means "not available"
                if isinstance(exc, FutureTimeout):
                    # Close the client if the connect completes after all.
                    pending.add_done_callback(lambda f: f.exception() is None and f.result().close())
                self._last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                raise WeaviateUnavailable(
                    f"cannot reach Weaviate at {self.address.http_host}:{self.address.http_port} "
                    f"(gRPC {self.address.grpc_port}): {self._last_error}"
                ) from exc
            self._prepared.clear()
            return self._client

    def _open_client(self) -> weaviate.WeaviateClient:
        return weaviate.connect_to_custom(
            http_host=self.address.http_host,
            http_port=self.address.http_port,
            http_secure=False,
            grpc_host=self.address.http_host,
            grpc_port=self.address.grpc_port,
            grpc_secure=False,
            auth_credentials=Auth.api_key(self.address.api_key) if self.address.api_key else None,
            additional_config=AdditionalConfig(timeout=self._timeout),
        )

    def reset(self) -> None:
        """Drop the client after a connection failure; the next call reconnects."""
        with self._lock:
            client, self._client = self._client, None
            channel, self._search_channel, self._search_stub = self._search_channel, None, None
            self._prepared.clear()
        if channel is not None:
            channel.close()
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken client may fail; it is gone either way
                log.debug("closing a broken Weaviate client failed", exc_info=True)

    def run(self, operation: Callable[[weaviate.WeaviateClient], T], *, deadline_s: float | None = None) -> T:
        """`operation(client)` within `deadline_s` (the read deadline by default); connection
        failures and expired deadlines become WeaviateUnavailable, other errors pass through."""
        client = self._connect()
        deadline = self.read_deadline_s if deadline_s is None else deadline_s
        try:
            return self._calls.submit(operation, client).result(timeout=deadline)
        except FutureTimeout as exc:
            self._last_error = f"no answer within {deadline:.1f} s"
            self.reset()
            raise WeaviateUnavailable(f"Weaviate call failed: {self._last_error}") from exc
        except Exception as exc:
            if _is_unavailable(exc):
                self._last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.reset()
                raise WeaviateUnavailable(f"Weaviate call failed: {self._last_error}") from exc
            raise

    def search(self, request: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply | None:
        """Weaviate's gRPC `Search`, called directly: the reply, or None when the request's tenant
        or collection does not exist. The gRPC timeout is the deadline, so no worker thread is
        needed; a server that is down or too slow gives WeaviateUnavailable, other errors pass."""
        stub = self._search_stub or self._open_search_stub()
        try:
            return stub.Search(request, timeout=self._query_timeout_s, metadata=self._grpc_metadata)
        except grpc.RpcError as exc:
            code, details = exc.code(), str(exc.details() or "")  # type: ignore[attr-defined]
            if code in _UNAVAILABLE_CODES:
                # A fresh channel retries at once; one left in TRANSIENT_FAILURE would wait out
                # gRPC's reconnect backoff (up to two minutes) after the server is back.
                self._drop_search_channel(stub)
                raise WeaviateUnavailable(f"Weaviate search failed: gRPC {code.name}: {details[:200]}") from exc
            if _names_missing_tenant(details):
                return None
            raise RuntimeError(f"Weaviate search failed: gRPC {code.name}: {details[:500]}") from exc

    def _drop_search_channel(self, failed: weaviate_pb2_grpc.WeaviateStub) -> None:
        """Close the channel a call failed on, unless another call has already replaced it."""
        with self._lock:
            if self._search_stub is not failed:
                return
            channel, self._search_channel, self._search_stub = self._search_channel, None, None
        if channel is not None:
            channel.close()

    def _open_search_stub(self) -> weaviate_pb2_grpc.WeaviateStub:
        with self._lock:
            if self._search_stub is None:
                self._search_channel = grpc.insecure_channel(f"{self.address.http_host}:{self.address.grpc_port}")
                self._search_stub = weaviate_pb2_grpc.WeaviateStub(self._search_channel)
            return self._search_stub

    def is_ready(self) -> bool:
        try:
            return bool(self.run(lambda client: client.is_ready()))
        except WeaviateUnavailable:
            return False

    def ensure_collection(self, name: str, create: Callable[[weaviate.WeaviateClient], None]) -> None:
        """Create collection `name` with `create(client)` unless it exists (checked once per connection)."""
        if name in self._prepared:
            return

        def ensure(client: weaviate.WeaviateClient) -> None:
            if client.collections.exists(name):
                return
            try:
                create(client)
            except UnexpectedStatusCodeError as exc:  # another replica created it first
                if "already exists" not in str(exc).lower():
                    raise

        self.run(ensure, deadline_s=self.write_deadline_s)
        self._prepared.add(name)

    def close(self) -> None:
        self.reset()
        self._calls.shutdown(wait=False, cancel_futures=True)


def _multi_tenancy():  # type: ignore[no-untyped-def]
    return Configure.multi_tenancy(enabled=True, auto_tenant_creation=True, auto_tenant_activation=True)


def _vector_index(kind: str):  # type: ignore[no-untyped-def]
    """"flat" (exact brute force) by default: a tenant's KB is thousands of chunks, where exact
    search costs about a millisecond and, unlike HNSW after in-place re-ingests, never misses a
    neighbour. "hnsw" is for tenants with hundreds of thousands of chunks."""
    if kind == "flat":
        return Configure.VectorIndex.flat()
    if kind == "hnsw":
        return Configure.VectorIndex.hnsw()
    raise ValueError(f"unknown vector index {kind!r} (flat or hnsw)")


def _keyword(name: str, data_type: DataType = DataType.TEXT) -> Property:
    """An exact-match property for filters, kept out of BM25."""
    return Property(name=name, data_type=data_type, tokenization=Tokenization.FIELD, index_searchable=False)


def chunk_uuid(chunk_id: str) -> uuid.UUID:
    return uuid.uuid5(OBJECT_ID_NAMESPACE, f"chunk:{chunk_id}")


def case_uuid(ticket_id: str) -> uuid.UUID:
    return uuid.uuid5(OBJECT_ID_NAMESPACE, f"case:{ticket_id}")


@dataclass(frozen=True)
class IngestReport:
    articles: int
    chunks: int
    stale_chunks_deleted: int


class _TenantCollection:
    """One multi-tenant collection; every operation runs inside one Weaviate tenant."""

    def __init__(self, connection: WeaviateConnection, collection: str) -> None:
        self._connection = connection
        self.collection_name = collection

    def _create(self, client: weaviate.WeaviateClient) -> None:
        raise NotImplementedError

    def _run(self, tenant_id: str, operation: Callable[[Collection], T], *, write: bool = False) -> T:
        tenant = weaviate_tenant(tenant_id)
        self._connection.ensure_collection(self.collection_name, self._create)
        return self._connection.run(
            lambda client: operation(client.collections.use(self.collection_name).with_tenant(tenant)),
            deadline_s=self._connection.write_deadline_s if write else None,
        )

    def _read(self, tenant_id: str, operation: Callable[[Collection], T], empty: T, *, write: bool = False) -> T:
        """An operation on what a tenant holds; a tenant that does not exist (never ingested
        anything) holds nothing, which is not an error: the result is `empty`."""
        try:
            return self._run(tenant_id, operation, write=write)
        except WeaviateBaseError as exc:
            if _is_missing_tenant(exc):
                return empty
            raise

    def _search(
        self, tenant_id: str, *, limit: int, filters: SearchFilters, metadata: search_get_pb2.MetadataRequest,
        content: bool, **search: object,
    ) -> Sequence[search_get_pb2.SearchResult]:
        """The best `limit` objects of a search (`search` names one of SearchRequest's searches:
        hybrid_search, bm25_search, near_vector), with their properties if `content` and the
        `metadata` asked for; a tenant that does not exist holds nothing."""
        request = search_get_pb2.SearchRequest(
            collection=self.collection_name,
            tenant=weaviate_tenant(tenant_id),
            limit=limit,
            filters=_filters(filters),
            # Absent: every property; empty: none.
            properties=None if content else search_get_pb2.PropertiesRequest(),
            metadata=metadata,
            # The reply layout weaviate-client 4.23 asks for and this code reads: Weaviate 1.27 or
            # newer, the oldest that client accepts (the local node is 1.39).
            uses_123_api=True, uses_125_api=True, uses_127_api=True,
            **search,  # type: ignore[arg-type]
        )
        reply = self._connection.search(request)
        return () if reply is None else reply.results

    def _ranked(self, tenant_id: str, *, limit: int, filters: SearchFilters, **search: object) -> list[_Ranked]:
        """The best `limit` objects of a search as ids, scores and update times only."""
        results = self._search(tenant_id, limit=limit, filters=filters, content=False, metadata=_RANKED_METADATA, **search)
        return [
            _Ranked(r.metadata.id, r.metadata.last_update_time_unix, r.metadata.score, r.metadata.distance)
            for r in results
        ]

    def _insert_many(self, tenant_id: str, objects: list[DataObject], noun: str) -> None:
        """Write objects (new or replacing those with the same ids); any rejected one is an error."""
        result = self._run(tenant_id, lambda collection: collection.data.insert_many(objects), write=True)
        if result.has_errors:
            first = next(iter(result.errors.values()))
            raise RuntimeError(f"{len(result.errors)} {noun} failed to index, e.g. {first.message}")

    def drop_tenant(self, tenant_id: str) -> None:
        tenant = weaviate_tenant(tenant_id)
        self._connection.ensure_collection(self.collection_name, self._create)
        self._connection.run(lambda client: client.collections.use(self.collection_name).tenants.remove([tenant]),
                             deadline_s=self._connection.write_deadline_s)


class KnowledgeIndex(_TenantCollection):
    """Article chunks in one multi-tenant collection (tenants are created on first ingest)."""

    def __init__(
        self,
        connection: WeaviateConnection,
        encoder: TextEncoder,
        *,
        collection: str = KB_COLLECTION,
        batch_size: int = 256,
        chunker: Callable[[KnowledgeArticle], list[Chunk]] = chunk_article,
        vector_index: str = "flat",
    ) -> None:
        super().__init__(connection, collection)
        self._encoder = encoder
        self._batch_size = batch_size
        self._chunker = chunker
        self._vector_index = vector_index
        self._chunks = _ChunkCache()

    def _create(self, client: weaviate.WeaviateClient) -> None:
        client.collections.create(
            self.collection_name,
            description="Knowledge-base article chunks (one Weaviate tenant per Supportflow tenant)",
            properties=[
                Property(name="text", data_type=DataType.TEXT),
                Property(name="title", data_type=DataType.TEXT),
                Property(name="section", data_type=DataType.TEXT),
                _keyword("article_id"),
                _keyword("chunk_id"),
                Property(name="chunk_index", data_type=DataType.INT),
                _keyword("url"),
                _keyword("source"),
                _keyword("owner"),
                _keyword("locale"),
                _keyword("intents", DataType.TEXT_ARRAY),
                Property(name="is_policy", data_type=DataType.BOOL),
                Property(name="updated_at", data_type=DataType.DATE),
                Property(name="review_by", data_type=DataType.DATE),
            ],
            vector_config=Configure.Vectors.self_provided(vector_index_config=_vector_index(self._vector_index)),
            multi_tenancy_config=_multi_tenancy(),
        )

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, tenant_id: str, articles: Iterable[KnowledgeArticle]) -> IngestReport:
        """Index (or re-index) `articles` for a tenant; each article's old chunks are replaced."""
        articles = list(articles)
        chunks_by_article = {a.article_id: self._chunker(a) for a in articles}
        chunks = [c for group in chunks_by_article.values() for c in group]
        for start in range(0, len(chunks), self._batch_size):
            batch = chunks[start:start + self._batch_size]
            vectors = np.asarray(self._encoder.encode([c.search_text for c in batch]), dtype=np.float32)
            objects = [
                DataObject(properties=_chunk_properties(c), uuid=chunk_uuid(c.chunk_id), vector=v.tolist())
                for c, v in zip(batch, vectors)
            ]
            self._insert_many(tenant_id, objects, "chunks")
        deleted = self._delete_leftovers(tenant_id, {a: len(c) for a, c in chunks_by_article.items()})
        return IngestReport(articles=len(articles), chunks=len(chunks), stale_chunks_deleted=deleted)

    def _delete_leftovers(self, tenant_id: str, chunk_counts: dict[str, int], group: int = 50) -> int:
        """Delete chunks whose index is beyond the article's current chunk count."""
        deleted = 0
        items = list(chunk_counts.items())
        for start in range(0, len(items), group):
            where = Filter.any_of([
                Filter.by_property("article_id").equal(article_id) & Filter.by_property("chunk_index").greater_or_equal(count)
                for article_id, count in items[start:start + group]
            ])
            deleted += self._run(tenant_id, lambda collection: collection.data.delete_many(where=where), write=True).successful
        return deleted

    def delete(self, tenant_id: str, article_id: str) -> int:
        """Remove every chunk of an article; returns how many were removed (0 if none or no tenant)."""
        where = Filter.by_property("article_id").equal(article_id)
        return self._read(tenant_id, lambda collection: collection.data.delete_many(where=where).successful, 0, write=True)

    def count(self, tenant_id: str, article_id: str | None = None) -> int:
        where = Filter.by_property("article_id").equal(article_id) if article_id else None
        return int(self._read(
            tenant_id, lambda collection: collection.aggregate.over_all(filters=where, total_count=True).total_count or 0, 0
        ))

    def article_versions(self, tenant_id: str, source: str, page_size: int = 1000) -> dict[str, datetime | None]:
        """article id -> the `updated_at` of the version indexed, for the tenant's articles from
        `source` (what the help-centre sync compares against; {} for a tenant never ingested).

        An article's version is the OLDEST `updated_at` among its chunks: a re-index that stopped
        half-way leaves some chunks old, so the article still reads as not up to date. Reads the
        tenant page by page in id order (Weaviate's cursor takes no filter; three short properties
        a chunk), each page within the query deadline."""
        versions: dict[str, datetime | None] = {}
        after = None
        while True:
            page = self._read(tenant_id, lambda collection: collection.query.fetch_objects(
                limit=page_size, after=after, return_properties=["article_id", "source", "updated_at"],
            ).objects, [])
            for obj in page:
                props = obj.properties
                if props.get("source") != source:
                    continue
                article_id = str(props.get("article_id", ""))
                updated_at = _as_datetime(props.get("updated_at"))
                if article_id not in versions:
                    versions[article_id] = updated_at
                elif versions[article_id] is not None and (updated_at is None or updated_at < versions[article_id]):
                    versions[article_id] = updated_at
            if len(page) < page_size:
                return versions
            after = page[-1].uuid

    # -- reads ----------------------------------------------------------------------------------

    def hybrid(
        self, tenant_id: str, keywords: str, vector: np.ndarray, *, alpha: float, limit: int,
        filters: SearchFilters = SearchFilters(), fusion: str = "relative",
    ) -> list[PassageHit]:
        """BM25 + vector, fused by `fusion` (see `_hybrid`); each hit carries its passage vector."""
        ranked = self._ranked(tenant_id, limit=limit, filters=filters,
                              hybrid_search=_hybrid(keywords, KB_TEXT_PROPERTIES, vector, alpha, fusion=fusion))
        return self._with_content(tenant_id, [(r, r.score, None) for r in ranked])

    def bm25(self, tenant_id: str, keywords: str, *, limit: int, filters: SearchFilters = SearchFilters()) -> list[PassageHit]:
        ranked = self._ranked(tenant_id, limit=limit, filters=filters,
                              bm25_search=base_search_pb2.BM25(query=keywords, properties=KB_TEXT_PROPERTIES))
        return self._with_content(tenant_id, [(r, r.score, None) for r in ranked])

    def near_vector(self, tenant_id: str, vector: np.ndarray, *, limit: int, filters: SearchFilters = SearchFilters()) -> list[PassageHit]:
        ranked = self._ranked(tenant_id, limit=limit, filters=filters, near_vector=base_search_pb2.NearVector(
            vectors=[base_pb2.Vectors(vector_bytes=_vector_bytes(vector), type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32)]
        ))
        # Cosine distance = 1 - cosine similarity.
        return self._with_content(tenant_id, [(r, 1.0 - r.distance, 1.0 - r.distance) for r in ranked])

    def warm(self, tenant_id: str, page_size: int = 200) -> int:
        """Load a tenant's chunks into the chunk cache (as many as it holds), so that the first
        searches after a start do not each fetch their candidates' content; returns how many were
        loaded. Reads the tenant page by page in id order, each page within the query deadline."""
        loaded, after = 0, None
        while loaded < self._chunks.capacity:
            page = self._read(tenant_id, lambda collection: collection.query.fetch_objects(
                limit=min(page_size, self._chunks.capacity - loaded), after=after, include_vector=True,
                return_metadata=MetadataQuery(last_update_time=True),
            ).objects, [])
            for obj in page:
                key = _ChunkKey(tenant_id, str(obj.uuid), _unix_ms(obj.metadata.last_update_time))
                self._chunks.put(key, _passage(obj, 0.0, None, _default_vector(obj.vector)))
            loaded += len(page)
            if len(page) < page_size:
                return loaded
            after = page[-1].uuid
        return loaded

    def _with_content(self, tenant_id: str, ranked: list[tuple[_Ranked, float, float | None]]) -> list[PassageHit]:
        """Hits for objects a query returned as bare ids and scores, their text, metadata and vector
        taken from the chunk cache, fetched in one request for those it lacks. An object deleted
        between the two requests is dropped."""
        keys = [_ChunkKey(tenant_id, r.object_id, r.updated_ms) for r, _, _ in ranked]
        cached = self._chunks.get_many(keys)
        missing = [key.object_id for key in keys if key not in cached]
        if missing:
            fetched = self._read(tenant_id, lambda collection: collection.query.fetch_objects(
                filters=Filter.by_id().contains_any(missing), limit=len(missing), include_vector=True,
                return_metadata=MetadataQuery(last_update_time=True),
            ).objects, [])
            for obj in fetched:
                key = _ChunkKey(tenant_id, str(obj.uuid), _unix_ms(obj.metadata.last_update_time))
                content = _passage(obj, 0.0, None, _default_vector(obj.vector))
                self._chunks.put(key, content)
                # Rewritten between the two requests: the newer content serves the older key too.
                cached.update({k: content for k in keys if k.object_id == key.object_id and k not in cached})
        return [
            cached[key].rescored(float(score), similarity)
            for key, (_, score, similarity) in zip(keys, ranked)
            if key in cached
        ]


_RANKED_METADATA = search_get_pb2.MetadataRequest(uuid=True, last_update_time_unix=True, score=True, distance=True)


@dataclass(frozen=True)
class _Ranked:
    """One object a search ranked."""

    object_id: str
    updated_ms: int  # Weaviate's last update time, milliseconds since the epoch
    score: float
    distance: float  # cosine distance, in a vector search


class _ChunkKey(NamedTuple):  # a tuple: hashed in C, ~6 lookups per candidate per search
    tenant_id: str
    object_id: str
    updated_ms: int | None  # Weaviate's last update time: a rewritten chunk gets a new key


class _ChunkCache:
    """Chunk content by tenant, object id and last update time, least recently used out first.

    A search asks Weaviate for ids and scores only: the text, metadata and vector of 40 candidates
    cost ~11 ms more per query to send and decode, more than the search itself. The key holds the
    object's last update time, so a re-ingested chunk is a miss, never a stale hit.
    """

    def __init__(self, max_chunks: int = CHUNK_CACHE_SIZE) -> None:
        self._entries: OrderedDict[_ChunkKey, PassageHit] = OrderedDict()
        self._max_chunks = max_chunks
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._max_chunks

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: list[_ChunkKey]) -> dict[_ChunkKey, PassageHit]:
        with self._lock:
            found = {}
            for key in keys:
                content = self._entries.get(key)
                if content is not None:
                    self._entries.move_to_end(key)
                    found[key] = content
            return found

    def put(self, key: _ChunkKey, content: PassageHit) -> None:
        with self._lock:
            self._entries[key] = content
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_chunks:
                self._entries.popitem(last=False)


def _filters(filters: SearchFilters) -> base_pb2.Filters | None:
    """SearchFilters as Weaviate's gRPC filter: every set field must match (AND)."""

    def equal(name: str, **value: object) -> base_pb2.Filters:
        return base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_EQUAL, target=base_pb2.FilterTarget(property=name),
                                **value)  # type: ignore[arg-type]

    def any_of(name: str, values: tuple[str, ...]) -> base_pb2.Filters:
        return base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_CONTAINS_ANY,
                                target=base_pb2.FilterTarget(property=name),
                                value_text_array=base_pb2.TextArray(values=list(values)))

    clauses = []
    if filters.locale:
        clauses.append(equal("locale", value_text=filters.locale))
    if filters.intents:
        clauses.append(any_of("intents", filters.intents))
    if filters.sources:
        clauses.append(any_of("source", filters.sources))
    if filters.policy_only:
        clauses.append(equal("is_policy", value_boolean=True))
    if len(clauses) < 2:
        return clauses[0] if clauses else None
    return base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_AND, filters=clauses)


# Weaviate's two hybrid fusions. "relative" (relativeScoreFusion) min-max normalises each search's
# scores to 0-1 and sums them weighted by alpha, so the fused score keeps how much better a hit
# matched (the best is at most 1). "ranked" (rankedFusion, reciprocal-rank fusion) gives a hit
# weight / (rank + 60) from each search, rank counted from 0: it keeps only the order, and the
# fused score is at most 1/60.
FUSION_TYPES = {
    "relative": base_search_pb2.Hybrid.FUSION_TYPE_RELATIVE_SCORE,
    "ranked": base_search_pb2.Hybrid.FUSION_TYPE_RANKED,
}


def _hybrid(keywords: str, properties: list[str], vector: np.ndarray, alpha: float, *,
            fusion: str = "relative") -> base_search_pb2.Hybrid:
    """BM25 over `properties` and the vector search, fused by `fusion`, one of FUSION_TYPES
    (alpha: the vector's share)."""
    if fusion not in FUSION_TYPES:
        raise ValueError(f"fusion {fusion!r}: expected one of {sorted(FUSION_TYPES)}")
    return base_search_pb2.Hybrid(
        query=keywords,
        properties=properties,
        fusion_type=FUSION_TYPES[fusion],
        alpha_param=alpha,
        use_alpha_param=True,
        vector_bytes=_vector_bytes(vector),
    )


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _unix_ms(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


def _chunk_properties(chunk: Chunk) -> dict:
    article = chunk.article
    return {
        "text": chunk.text,
        "title": article.title,
        "section": chunk.section,
        "article_id": article.article_id,
        "chunk_id": chunk.chunk_id,
        "chunk_index": chunk.index,
        "url": article.url,
        "source": article.source,
        "owner": article.owner,
        "locale": article.locale,
        "intents": list(article.intents),
        "is_policy": article.is_policy,  # None (null): the knowledge base does not say
        "updated_at": article.updated_at,
        "review_by": article.review_by,
    }


def _default_vector(vector: object) -> np.ndarray | None:
    values = vector.get("default") if isinstance(vector, dict) else vector
    return None if values is None else np.asarray(values, dtype=np.float32)


def _passage(obj, score: float, similarity: float | None, vector: np.ndarray | None = None) -> PassageHit:  # type: ignore[no-untyped-def]
    p = obj.properties
    return PassageHit(
        article_id=str(p.get("article_id", "")),
        chunk_id=str(p.get("chunk_id", "")),
        title=str(p.get("title", "")),
        section=str(p.get("section", "")),
        text=str(p.get("text", "")),
        score=float(score),
        similarity=similarity,
        url=str(p.get("url", "")),
        source=str(p.get("source", "")),
        owner=str(p.get("owner", "")),
        is_policy=p.get("is_policy"),
        intents=tuple(str(intent) for intent in p.get("intents") or ()),
        review_by=_as_datetime(p.get("review_by")),
        updated_at=_as_datetime(p.get("updated_at")),
        vector=vector,
    )


def _as_datetime(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


class CaseIndex(_TenantCollection):
    """Resolved tickets, searchable by problem statement, one Weaviate tenant per Supportflow tenant.
    HNSW: unlike a tenant's KB, the case history only grows."""

    def __init__(self, connection: WeaviateConnection, encoder: TextEncoder, *, collection: str = CASES_COLLECTION) -> None:
        super().__init__(connection, collection)
        self._encoder = encoder

    def _create(self, client: weaviate.WeaviateClient) -> None:
        client.collections.create(
            self.collection_name,
            description="Resolved tickets for similar-case retrieval",
            properties=[
                _keyword("ticket_id"),
                Property(name="problem_statement", data_type=DataType.TEXT),
                Property(name="resolution_notes", data_type=DataType.TEXT),
                _keyword("intent"),
                _keyword("article_ids", DataType.TEXT_ARRAY),
            ],
            vector_config=Configure.Vectors.self_provided(vector_index_config=_vector_index("hnsw")),
            multi_tenancy_config=_multi_tenancy(),
        )

    def upsert(self, tenant_id: str, case: ResolvedCase) -> None:
        """Index a resolved case; the same ticket resolved again replaces its earlier entry."""
        self.upsert_many(tenant_id, [case])

    def upsert_many(self, tenant_id: str, cases: Sequence[ResolvedCase], batch_size: int = 256) -> int:
        """Index cases in batches (an import of helpdesk history); returns how many were written."""
        for start in range(0, len(cases), batch_size):
            batch = cases[start:start + batch_size]
            vectors = np.asarray(self._encoder.encode([c.problem_statement for c in batch]), dtype=np.float32)
            objects = [
                DataObject(properties=_case_properties(case), uuid=case_uuid(case.ticket_id), vector=vector.tolist())
                for case, vector in zip(batch, vectors)
            ]
            self._insert_many(tenant_id, objects, "cases")
        return len(cases)

    def count(self, tenant_id: str) -> int:
        return int(self._read(
            tenant_id, lambda collection: collection.aggregate.over_all(total_count=True).total_count or 0, 0
        ))

    def keep_only(self, tenant_id: str, ticket_ids: Iterable[str]) -> int:
        """Delete every case of the tenant but those of `ticket_ids` (a demo going back to its
        sample history); returns how many were deleted."""
        kept = [case_uuid(ticket_id) for ticket_id in ticket_ids]
        # Weaviate refuses an empty contains_none: keeping nothing is "none of the nil id".
        where = Filter.by_id().contains_none(kept or [_NIL_UUID])
        return self._read(tenant_id, lambda collection: collection.data.delete_many(where=where).successful, 0, write=True)

    def search(self, tenant_id: str, keywords: str, vector: np.ndarray, *, k: int, alpha: float) -> list[CaseHit]:
        """Hybrid search; each hit also carries the cosine of `vector` and the case's vector."""
        query = np.asarray(vector, dtype=np.float32)
        results = self._search(
            tenant_id, limit=k, filters=SearchFilters(), content=True,
            metadata=search_get_pb2.MetadataRequest(uuid=True, score=True, vector=True),
            hybrid_search=_hybrid(keywords, CASE_TEXT_PROPERTIES, query, alpha),
        )
        return [
            CaseHit(_case(r.properties.non_ref_props.fields), r.metadata.score, _cosine(query, _reply_vector(r.metadata)))
            for r in results
        ]


_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _cosine(query: np.ndarray, other: np.ndarray | None) -> float:
    if other is None:
        return 0.0
    norms = float(np.linalg.norm(query) * np.linalg.norm(other))
    return float(query @ other) / norms if norms > 0 else 0.0


def _case_properties(case: ResolvedCase) -> dict:
    return {
        "ticket_id": case.ticket_id,
        "problem_statement": case.problem_statement,
        "resolution_notes": case.resolution_notes,
        "intent": case.intent,
        "article_ids": list(case.article_ids),
    }


def _case(fields: Mapping[str, properties_pb2.Value]) -> ResolvedCase:
    """A case from the properties of a search result."""

    def text(name: str) -> str:
        return fields[name].text_value if name in fields else ""

    article_ids = fields["article_ids"].list_value.text_values.values if "article_ids" in fields else ()
    return ResolvedCase(
        ticket_id=text("ticket_id"),
        problem_statement=text("problem_statement"),
        resolution_notes=text("resolution_notes"),
        intent=text("intent"),
        article_ids=tuple(article_ids),
    )


def _reply_vector(metadata: search_get_pb2.MetadataResult) -> np.ndarray | None:
    """The object's (single, unnamed) vector in a search result, if it was asked for."""
    for vector in metadata.vectors:
        return np.frombuffer(vector.vector_bytes, dtype="<f4")
    return None
