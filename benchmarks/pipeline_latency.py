"""Time from ticket received to decision, end to end through Kafka, on the offline path.

    python benchmarks/pipeline_latency.py [--rate 20] [--tickets 400] [--warmup 40] [--json OUT]

Starts Kafka and Weaviate if they are not running (and stops what it started), trains/indexes the
demo assets if needed, starts the six services as processes, sends a warm-up batch, then sends
`--tickets` tickets through the gateway's HTTP intake at `--rate` per second and prints the
received -> decided percentiles (the timestamps are the gateway's receipt and the escalator's
decision, both carried on the decision event). Target (issue 5): p95 under 1 s at 20 tickets/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tooling.demo import prepare, run_pipeline  # noqa: E402
from tooling.demo_report import percentile  # noqa: E402
from tooling.devinfra.stack import LocalStack  # noqa: E402
from supportflow.eventbus import delete_namespace_topics  # noqa: E402
from tooling.fleet import ServiceFleet  # noqa: E402
from tooling.sample_tickets import demo_tickets  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="tickets per second (default 20)")
    parser.add_argument("--tickets", type=int, default=400, help="measured tickets (default 400)")
    parser.add_argument("--warmup", type=int, default=40, help="tickets sent first and not measured")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    settings = FleetSettings.from_env().replace(topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    stack = LocalStack(settings)
    stack.install()
    stack.up()
    try:
        ready = prepare(settings)
        with tempfile.TemporaryDirectory() as logs, ServiceFleet(ready, Path(logs)):
            tickets = list(demo_tickets(args.warmup + args.tickets, run_id="bench"))
            run_pipeline(ready, tickets[: args.warmup], rate=args.rate)
            run = run_pipeline(ready, tickets[args.warmup:], rate=args.rate)
        delete_namespace_topics(settings)
    finally:
        if stack.started_by_us:
            stack.down(stack.started_by_us)

    latencies = [r["timings_ms"]["received_to_decided"] for r in run.records
                 if r["timings_ms"]["received_to_decided"] is not None]
    figures = {
        "rate_per_s": args.rate,
        "tickets": len(run.sent),
        "decisions": len(run.records),
        "missing": len(run.missing),
        "duplicated": len(run.duplicated),
        "received_to_decided_ms": {q: percentile(latencies, n) for q, n in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"max": max(latencies) if latencies else None},
        "by_decision": dict(Counter(r["decision"] for r in run.records)),
    }
    lat = figures["received_to_decided_ms"]
    print(f"{figures['tickets']} tickets at {args.rate:g}/s through Kafka (offline drafter): "
          f"{figures['decisions']} decisions, {figures['missing']} missing, {figures['duplicated']} duplicated")
    if latencies:
        print(f"received -> decided: p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, "
              f"p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if not run.missing and not run.duplicated else 1


if __name__ == "__main__":
    raise SystemExit(main())
