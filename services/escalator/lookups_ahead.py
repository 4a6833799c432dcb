"""The escalator's peer lookups, started ahead and run concurrently.

The agent decides a batch's events one after another on its worker thread, and a decision that
hands a ticket to a person waits on its peers: similar resolved cases and, for a ticket that never
reached the drafter, the help center's passages (the retriever, ~20 ms each) and an investigation
(~100 ms). Made in turn, those waits cap a replica at a few dozen tickets a second whatever its
CPU. `LookupsAhead` wraps the three lookups: `start` begins the ones an event's decision is
expected to make (`Escalator.lookups_for`) on a small pool, and when the decision asks, it is
handed the answer already under way; a lookup nobody started is made in turn, as before. The
decisions stay in order and their state untouched: only the waiting overlaps.

A guess can be wrong (a ticket joins an incident within the batch, say): a lookup started for a
decision that did not need it is dropped by `forget` at the end of the batch and counted, and its
only cost is the peer's work.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.investigation import Investigate

from services.escalator import metrics
from services.escalator.handlers import PacketLookups
from services.escalator.help_center import ArticleLookup
from services.escalator.similar_cases import SimilarCaseLookup


class LookupsAhead:
    def __init__(self, similar_cases: SimilarCaseLookup, articles: ArticleLookup, investigate: Investigate,
                 concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._similar_cases = similar_cases
        self._articles = articles
        self._investigate = investigate
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="escalator-lookup")
        # Used by the agent's worker thread, and forgotten from the loop at the end of a batch.
        self._started: dict[Hashable, Future] = {}
        self._lock = threading.Lock()

    def start(self, lookups: PacketLookups) -> None:
        """Begin the lookups of one expected decision (each at most once while it is unused)."""
        self._begin(("similar", *lookups.similar_cases), self._similar_cases, *lookups.similar_cases)
        if lookups.investigate is not None:
            self._begin(("investigate", lookups.investigate.SerializeToString(deterministic=True)),
                        self._investigate, lookups.investigate)
        if lookups.articles is not None:
            self._begin(("articles", *lookups.articles), self._articles, *lookups.articles)

    def similar_cases(self, tenant: str, query: str) -> list[str]:
        return self._answer(("similar", tenant, query), self._similar_cases, tenant, query)

    def articles(self, tenant: str, query: str, intent: str) -> list[tk.EvidencePassage]:
        return self._answer(("articles", tenant, query, intent), self._articles, tenant, query, intent)

    def investigate(self, request: svc.InvestigateRequest) -> ev.Investigation:
        return self._answer(("investigate", request.SerializeToString(deterministic=True)), self._investigate, request)

    def forget(self) -> None:
        """Drop what was started and not asked for (the batch is over): not yet running, cancelled."""
        with self._lock:
            unused, self._started = self._started, {}
        if unused:
            metrics.LOOKUPS_AHEAD.labels("unused").inc(len(unused))
            for future in unused.values():
                future.cancel()

    def close(self) -> None:
        self.forget()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _begin(self, key: Hashable, lookup: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if key not in self._started:
                self._started[key] = self._pool.submit(lookup, *args)

    def _answer(self, key: Hashable, lookup: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            future = self._started.pop(key, None)
        if future is None:
            metrics.LOOKUPS_AHEAD.labels("not_started").inc()
            return lookup(*args)
        metrics.LOOKUPS_AHEAD.labels("used").inc()
        return future.result()
