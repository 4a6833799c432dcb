"""Time to first evidence and evidence completeness of investigations, per archetype, over the
demo's tickets whose true intent has a playbook (the account-specific ones, and card arrival).

    python benchmarks/investigation_latency.py [--tickets 200] [--concurrency 4] [--json OUT]

Starts the demo bank's account system as its own process (seeded from the demo's tickets, with its
simulated 20-120 ms per call) and the investigator's gRPC server in this process, then asks
Investigate for each ticket with its true intent (this measures the investigation, not the
classifier). Prints, per archetype: time to first evidence p50/p95, the whole investigation's
p50/p95, mean completeness and how often the settled case type is the one the ticket's situation
was seeded with; then the same with the account system failing (503) and slowed past the
deadline, where every answer must still come within the deadline.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from services.classifier.intent_catalog import archetype_name, default_catalog  # noqa: E402
from services.investigator.handlers import Investigator  # noqa: E402
from services.investigator.playbooks import CASE_TYPES, load_playbooks  # noqa: E402
from services.investigator.servicer import InvestigatorServicer  # noqa: E402
from supportflow.contracts.v1 import services_pb2, services_pb2_grpc, ticket_pb2  # noqa: E402
from supportflow.observability import Health  # noqa: E402
from supportflow.rpc import create_server  # noqa: E402
from supportflow.systems import load_systems  # noqa: E402
from tooling.demo_report import percentile  # noqa: E402
from tooling.demo_systems import AccountSystemProcess, systems_file  # noqa: E402
from tooling.round_trip import DEMO_TENANT, TENANTS_DIR, sample_tickets  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402

ARCHETYPES = {name: value for value, name in ((ticket_pb2.ARCHETYPE_REPETITIVE, "repetitive"),
                                               (ticket_pb2.ARCHETYPE_FAQ_BOUNDED, "faq_bounded"),
                                               (ticket_pb2.ARCHETYPE_ACCOUNT_SPECIFIC, "account_specific"))}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def run_phase(stub, tickets, truth, archetype_of, concurrency: int) -> dict:  # noqa: ANN001
    def one(ticket):  # noqa: ANN001, ANN202
        request = services_pb2.InvestigateRequest(
            ticket=ticket_pb2.Ticket(ticket_id=ticket.id, tenant_id=DEMO_TENANT, customer_id=ticket.customer_id),
            classification=ticket_pb2.Classification(intent=ticket.label,
                                                     archetype=ARCHETYPES[archetype_of[ticket.label]]))
        started = time.monotonic()
        investigation = stub.Investigate(request, timeout=10).investigation
        return ticket, investigation, (time.monotonic() - started) * 1000.0

    by_archetype: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for ticket, investigation, wall_ms in pool.map(one, tickets):
            rows = by_archetype[archetype_of[ticket.label]]
            if investigation.first_evidence_ms:
                rows["first_evidence_ms"].append(investigation.first_evidence_ms)
            rows["elapsed_ms"].append(wall_ms)
            rows["completeness"].append(investigation.completeness)
            rows["with_findings"].append(1.0 if any(f.available for f in investigation.findings) else 0.0)
            seeded = truth.get(ticket.id, {}).get("case")
            if seeded:
                rows["case_agrees"].append(1.0 if investigation.case_type == CASE_TYPES[seeded] else 0.0)
    summary = {}
    for archetype, rows in sorted(by_archetype.items()):
        summary[archetype] = {
            "tickets": len(rows["elapsed_ms"]),
            "first_evidence_ms_p50": percentile(rows["first_evidence_ms"], 50),
            "first_evidence_ms_p95": percentile(rows["first_evidence_ms"], 95),
            "elapsed_ms_p50": percentile(rows["elapsed_ms"], 50),
            "elapsed_ms_p95": percentile(rows["elapsed_ms"], 95),
            "elapsed_ms_max": max(rows["elapsed_ms"]),
            "completeness_mean": sum(rows["completeness"]) / len(rows["completeness"]),
            "with_findings": sum(rows["with_findings"]) / len(rows["with_findings"]),
            "case_agrees": (sum(rows["case_agrees"]) / len(rows["case_agrees"])) if rows["case_agrees"] else None,
        }
    return summary


def print_phase(name: str, summary: dict) -> None:
    print(f"\n{name}")
    print(f"  {'archetype':<18}{'n':>4}  {'first evidence p50/p95 ms':>26}  {'investigation p50/p95/max ms':>29}"
          f"  {'completeness':>12}  {'case agrees':>11}")
    for archetype, row in summary.items():
        agrees = "-" if row["case_agrees"] is None else f"{row['case_agrees']:.0%}"
        print(f"  {archetype:<18}{row['tickets']:>4}  "
              f"{_ms(row['first_evidence_ms_p50']) + ' / ' + _ms(row['first_evidence_ms_p95']):>26}  "
              f"{_ms(row['elapsed_ms_p50']) + ' / ' + _ms(row['elapsed_ms_p95']) + ' / ' + _ms(row['elapsed_ms_max']):>29}"
              f"  {row['completeness_mean']:>12.2f}  {agrees:>11}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=200, help="demo tickets drawn (as `supportflow demo` does)")
    parser.add_argument("--concurrency", type=int, default=4, help="investigations in flight at once")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    settings = FleetSettings.from_env()
    logging.basicConfig(level=logging.ERROR)  # the breakers' state changes are expected here
    catalog = default_catalog()
    playbooks = load_playbooks(TENANTS_DIR / DEMO_TENANT / "playbooks")
    tickets = sample_tickets(args.tickets, run_id="bench")
    archetype_of = {t.label: archetype_name(catalog.archetype(t.label)) for t in tickets if t.label and ":" not in t.label}
    investigated = [t for t in tickets if t.label in playbooks.by_intent]
    print(f"{len(investigated)} of {len(tickets)} demo tickets have a playbook for their true intent; "
          f"deadline {settings.investigation_deadline_s:g} s, {args.concurrency} at once")

    figures = {}
    with tempfile.TemporaryDirectory(prefix="investigation-bench-") as scratch, \
            AccountSystemProcess(Path(scratch) / "account-system", tickets) as account_system:
        path = systems_file(Path(scratch) / "systems.yaml", {DEMO_TENANT: account_system})
        truth = account_system.truth()
        phases = [("healthy", {}), ("failing (HTTP 503 on every call)", {"status": 503}),
                  ("slow (3 s per call, past the deadline)", {"delay_s": 3.0})]
        for name, fault in phases:
            # A fresh investigator per phase, so one phase's open circuit breakers do not carry over.
            investigator = Investigator(load_systems(path, os.environ), TENANTS_DIR,
                                        deadline_s=settings.investigation_deadline_s)
            health = Health("investigator")
            server, port = create_server("investigator", [(services_pb2_grpc.add_InvestigatorServicer_to_server,
                                                           InvestigatorServicer(investigator),
                                                           "supportflow.contracts.v1.Investigator")],
                                         health, 0, host="127.0.0.1")
            server.start()
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            try:
                account_system.set_fault(fault)
                phase_tickets = investigated if not fault else investigated[:40]
                figures[name] = run_phase(services_pb2_grpc.InvestigatorStub(channel), phase_tickets, truth,
                                          archetype_of, args.concurrency)
            finally:
                account_system.set_fault({})
                channel.close()
                server.stop(0)
                investigator.close()
            print_phase(name, figures[name])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
