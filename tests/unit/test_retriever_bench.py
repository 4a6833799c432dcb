"""`supportflow kb bench` arithmetic: throughput, percentiles and CPU per query, on a fake search."""

from __future__ import annotations

import os
import time

from tooling.commands.retriever import cpu_seconds, measure


def busy(ms: float) -> None:
    """Spend `ms` of this thread's CPU (the process's clock would count the other callers too)."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


def test_cpu_seconds_reads_this_process_and_another_by_pid():
    own = cpu_seconds()
    by_pid = cpu_seconds(os.getpid())  # /proc counts in clock ticks: coarser, never ahead
    assert own is not None and by_pid is not None
    assert 0 < by_pid <= own + 0.05
    assert cpu_seconds(2**22 + 1) is None  # above the kernel's pid limit: no such process


def test_measure_reports_the_cpu_each_query_costs():
    figures = measure(lambda _text: busy(2.0), [f"q{i}" for i in range(40)], concurrency=2, store_pid=os.getpid())
    assert figures["queries"] == 40
    assert figures["p50_ms"] >= 2.0
    assert 1.8 <= figures["cpu_ms_per_query"] <= 6.0
    # The "store" here is this very process, so it saw the same CPU (to the clock tick).
    assert abs(figures["weaviate_cpu_ms_per_query"] - figures["cpu_ms_per_query"]) <= 1.0
    assert figures["qps"] > 0


def test_without_a_local_store_its_cpu_is_not_reported():
    assert measure(lambda _text: None, ["q"] * 5, concurrency=1)["weaviate_cpu_ms_per_query"] is None
