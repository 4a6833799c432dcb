"""Search throughput and latency at k=10, in-process and over gRPC, against real Weaviate.

    python benchmarks/retriever_bench.py [--tenant rho-bank] [--queries 300] [--concurrency 4]

Queries are Banking77 customer messages (short tickets). If the tenant has no index yet, the sample
KB is indexed first. Targets: p99 <= 50 ms and >= 100 queries/s on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tooling.settings import FleetSettings  # noqa: E402

from tooling.commands import retriever as cli  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenant", default="bench-rho-bank")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    cli.bench(FleetSettings.from_env(), args.tenant, queries=args.queries, k=args.k, concurrency=args.concurrency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
