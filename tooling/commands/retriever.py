"""`supportflow kb ingest | search | bench`: the retriever from the command line.

    supportflow kb ingest PATH --tenant T          PATH: .jsonl / .jsonl.gz file or a folder of .md
    supportflow kb search "QUERY" --tenant T --k 10 [--json]
    supportflow kb search --queries FILE.jsonl --tenant T --k 10
        input lines {"id", "query"}; output one JSON line per input, in order:
        {"id", "results": [{"article_id", "title", "score", "snippet"}, ...]} (at most k articles)
    supportflow kb bench [--tenant T]              queries/s and p50/p99 latency of Search at k=10
    supportflow cases ingest FILE.jsonl --tenant T  resolved tickets for similar-case search
    supportflow cases search "QUERY" --tenant T --k 3 [--json]
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

from tooling.devinfra.weaviate import WeaviateServer
from supportflow.service import limit_blas_threads
from tooling.sample_data import banking77_rows
from tooling.sample_data import path as sample_path
from tooling.settings import FleetSettings

from services.retriever.articles import load_articles
from services.retriever.case_files import load_cases
from services.retriever.components import RetrieverComponents, build_components
from services.retriever.search import (
    DEFAULT_CASE_MIN_SIMILARITY,
    SearchResult,
    build_query,
    find_similar_cases,
    segment_vectors,
)

SNIPPET_CHARS = 240


@contextmanager
def _connected(settings: FleetSettings, query_timeout_s: float = 1.0) -> Iterator[RetrieverComponents]:
    """The retriever's components for one command, closed when it is done."""
    parts = build_components(settings, query_timeout_s=query_timeout_s)
    try:
        yield parts
    finally:
        parts.close()


def ingest(path: str | Path, tenant: str, settings: FleetSettings) -> dict:
    """Index every article under `path` for `tenant` (re-ingesting replaces earlier chunks)."""
    articles = load_articles(Path(path))
    with _connected(settings, query_timeout_s=30.0) as parts:
        started = time.perf_counter()
        report = parts.knowledge.upsert(tenant, articles)
        return {
            "tenant": tenant,
            "articles": report.articles,
            "chunks": report.chunks,
            "stale_chunks_deleted": report.stale_chunks_deleted,
            "seconds": round(time.perf_counter() - started, 1),
        }


def ingest_cases(path: str | Path, tenant: str, settings: FleetSettings) -> dict:
    """Index the resolved cases in `path` for `tenant` (a case imported again replaces itself)."""
    cases = load_cases(path)
    with _connected(settings, query_timeout_s=30.0) as parts:
        started = time.perf_counter()
        written = parts.cases.upsert_many(tenant, cases)
        return {"tenant": tenant, "cases": written, "seconds": round(time.perf_counter() - started, 1)}


def keep_only_cases(settings: FleetSettings, tenant: str, ticket_ids: list[str]) -> int:
    """Delete every resolved case of `tenant` but those of `ticket_ids`; returns how many went."""
    with _connected(settings, query_timeout_s=30.0) as parts:
        return parts.cases.keep_only(tenant, ticket_ids)


def indexed_cases(settings: FleetSettings, tenant: str) -> int:
    """How many resolved cases `tenant` has in Weaviate (0 for a tenant never given any)."""
    with _connected(settings) as parts:
        return parts.cases.count(tenant)


def search_cases(query: str, tenant: str, k: int, as_json: bool, settings: FleetSettings, out: TextIO) -> None:
    """The resolved cases most like `query`, best first, with their resolution notes."""
    with _connected(settings, query_timeout_s=10.0) as parts:
        hits = find_similar_cases(parts.cases, parts.encoder, tenant, query, k)
    rows = [
        {
            "ticket_id": hit.case.ticket_id,
            "score": round(hit.score, 4),
            "similarity": round(hit.similarity, 4),
            "intent": hit.case.intent,
            "problem_statement": hit.case.problem_statement,
            "resolution_notes": hit.case.resolution_notes,
        }
        for hit in hits
    ]
    if as_json:
        out.write(json.dumps({"query": query, "cases": rows}, ensure_ascii=False, indent=2) + "\n")
        return
    out.write(f"{len(rows)} similar resolved cases (similarity >= {DEFAULT_CASE_MIN_SIMILARITY})\n")
    for rank, row in enumerate(rows, start=1):
        out.write(f"{rank:2d}. similarity {row['similarity']:.2f}  [{row['ticket_id']}] {row['problem_statement']}\n"
                  f"    resolution: {_snippet(row['resolution_notes'])}\n")


def indexed_chunks(settings: FleetSettings, tenant: str) -> int:
    """How many knowledge chunks `tenant` has in Weaviate (0 for a tenant never ingested)."""
    with _connected(settings) as parts:
        return parts.knowledge.count(tenant)


def result_json(result: SearchResult) -> list[dict]:
    return [
        {
            "article_id": article.article_id,
            "title": article.title,
            "score": round(article.score, 4),
            "snippet": _snippet(article.passages[0].text) if article.passages else "",
        }
        for article in result.articles
    ]


def _query_line(line: str) -> tuple[object, str, str]:
    """(id, query, error) of one line of a queries file; error is empty when the line is usable."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, "", f"not JSON: {exc}"
    if not isinstance(item, dict):
        return None, "", 'expected an object {"id", "query"}'
    query_id, text = item.get("id"), item.get("query")
    if not isinstance(text, str) or not text.strip():
        return query_id, "", 'no "query" text'
    return query_id, text, ""


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


def search(
    query: str | None,
    queries_file: str | Path | None,
    tenant: str,
    k: int,
    as_json: bool,
    settings: FleetSettings,
    out: TextIO,
) -> None:
    """Search one query (human-readable, or one JSON object with --json), or every line of a
    {"id","query"} JSON-lines file: one JSON line out per non-blank line in, in order. A line that
    is not such an object, or has an empty query, gets no results and an `error` saying why; the
    run goes on (only an unreachable store stops it)."""
    with _connected(settings, query_timeout_s=10.0) as parts:
        if queries_file is not None:
            with open(queries_file, encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    query_id, text, error = _query_line(line)
                    record = {"id": query_id, "results": []}
                    if error:
                        record["error"] = f"line {number}: {error}"
                    else:
                        record["results"] = result_json(parts.searcher.search(tenant, text, k))
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        result = parts.searcher.search(tenant, query or "", k)
        if as_json:
            payload = {"query": query, "gap": result.gap, "best_score": round(result.best_score, 4),
                       "results": result_json(result)}
            out.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
            return
        out.write(f"{len(result.articles)} articles (best similarity {result.best_score:.3f}"
                  f"{', KB GAP' if result.gap else ''})\n")
        for rank, row in enumerate(result_json(result), start=1):
            out.write(f"{rank:2d}. {row['score']:.3f}  {row['title']}  [{row['article_id']}]\n    {row['snippet']}\n")


# ---------------------------------------------------------------------------------------------
# Benchmark


def sample_queries(count: int, seed: int = 7) -> list[str]:
    """Banking77 customer messages (the shipped train split): short, ticket-like queries."""
    texts = [row["text"] for row in banking77_rows()]
    return random.Random(seed).sample(texts, min(count, len(texts)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system, all threads) used so far by this process, or by process `pid`
    (None when it cannot be read: not Linux, gone, or not ours to read)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _cpu_ms_per_query(before: float | None, after: float | None, queries: int) -> float | None:
    return None if before is None or after is None else round(1000 * (after - before) / queries, 1)


def measure(call: Callable[[str], object], queries: list[str], concurrency: int, *, store_pid: int | None = None) -> dict:
    """Latency percentiles of sequential calls, then throughput with `concurrency` callers and the
    CPU each query of that phase cost this process and, given its pid, the local Weaviate."""
    for text in queries[:20]:  # warm-up: connections, caches, BLAS threads
        call(text)
    latencies = []
    for text in queries:
        started = time.perf_counter()
        call(text)
        latencies.append((time.perf_counter() - started) * 1000)
    cursor = iter(queries * 2)
    lock = threading.Lock()

    def worker() -> int:
        done = 0
        while True:
            with lock:
                text = next(cursor, None)
            if text is None:
                return done
            call(text)
            done += 1

    own_cpu, store_cpu = cpu_seconds(), cpu_seconds(store_pid) if store_pid else None
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        total = sum(pool.map(lambda _: worker(), range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "cpu_ms_per_query": _cpu_ms_per_query(own_cpu, cpu_seconds(), total),
        "weaviate_cpu_ms_per_query": _cpu_ms_per_query(store_cpu, cpu_seconds(store_pid) if store_pid else None, total),
        "queries": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "qps": round(total / elapsed, 1),
        "concurrency": concurrency,
    }


def _ensure_sample_index(parts: RetrieverComponents, tenant: str, out: TextIO) -> None:
    if parts.knowledge.count(tenant) == 0:
        out.write(f"tenant {tenant} is empty: indexing the sample KB first\n")
        parts.knowledge.upsert(tenant, load_articles(sample_path("kb_articles.jsonl.gz")))


def bench(settings: FleetSettings, tenant: str, queries: int = 300, k: int = 10, concurrency: int = 4,
          out: TextIO | None = None) -> dict:
    """Search at k=10 in-process (the core: encode + Weaviate hybrid + grouping) and over gRPC
    (a local server on a free port), and the query encoding alone (the ceiling it sets on this
    machine); prints and returns queries/s, p50/p99 latency and CPU per query of each."""
    from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
    from supportflow.observability import Health
    from supportflow.rpc import create_server, open_channel

    from services.retriever.servicer import RetrieverServicer

    out = out or sys.stdout
    limit_blas_threads()  # as the service does (services/retriever/main.py)
    parts = build_components(settings)
    texts = sample_queries(queries)
    store_pid = WeaviateServer(settings).process.pid()  # the local node's, when this machine runs it
    figures: dict[str, dict] = {}
    try:
        _ensure_sample_index(parts, tenant, out)
        figures["in_process"] = measure(lambda text: parts.searcher.search(tenant, text, k), texts, concurrency,
                                        store_pid=store_pid)

        health = Health("retriever-bench")
        servicer = RetrieverServicer(parts.searcher, parts.cases, parts.encoder)
        server, port = create_server(
            "retriever-bench",
            [(services_pb2_grpc.add_RetrieverServicer_to_server, servicer, "supportflow.contracts.v1.Retriever")],
            health, 0, host="127.0.0.1",
        )
        server.start()
        try:
            stub = services_pb2_grpc.RetrieverStub(open_channel("retriever-bench", f"127.0.0.1:{port}", 5.0))
            figures["grpc"] = measure(
                lambda text: stub.Search(services_pb2.SearchRequest(tenant_id=tenant, query=text, k=k)),
                texts, concurrency, store_pid=store_pid,
            )
        finally:
            server.stop(grace=1).wait(2)
        figures["encode"] = measure(lambda text: segment_vectors(parts.encoder, build_query(text)), texts, concurrency)
    finally:
        parts.close()
    for path, row in figures.items():
        what = "encode only" if path == "encode" else f"{path} k={k}"
        out.write(f"{what:16s} {row['qps']:.1f} queries/s ({row['concurrency']} callers), "
                  f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms over {row['queries']} queries\n")
        cpu = [f"{row['cpu_ms_per_query']} ms this process"]
        if row["weaviate_cpu_ms_per_query"] is not None:
            cpu.append(f"{row['weaviate_cpu_ms_per_query']} ms the local Weaviate")
        out.write(f"{'':16s} CPU per query at full load: {', '.join(cpu)}\n")
    return figures
