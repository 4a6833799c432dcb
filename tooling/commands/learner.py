"""`supportflow kpis`: the KPI panel, fetched from the learner over gRPC (Learner.GetKpis) and shown
as a table or as JSON."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping, Protocol, Sequence, TextIO

import grpc
from google.protobuf.json_format import MessageToDict

from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
from supportflow.rpc import open_channel
from tooling.settings import FleetSettings

from services.learner.kpis import COMPANION_NAMES, KPI_NAMES

COLUMNS_PER_BLOCK = 4
_COUNTS = {name for name in KPI_NAMES + COMPANION_NAMES if name.startswith("hallucinated_policy")} | {
    "qa_sampled", "qa_reviewed", "tickets_resolved", "resolutions_reported", "drafts_with_verdict", "baseline_unknown",
    "csat_protected_deflection_withheld", "guardrail_review_open", "guardrail_override_active"}
_RATIOS = {"edit_burden", "escalation_precision", "csat_protected_deflection", "repeat_contact_7d", "repeat_contact_30d"}
_RELATIVE = {"bot_handle_time", "escalated_handle_time"}  # against the baseline: +10% is 10% slower
_SECONDS = {"time_to_first_useful_response", "time_to_first_useful_response_p95", "time_to_first_evidence",
            "time_to_first_evidence_p95"}
_DELTAS = {"csat_at_resolution", "csat_delayed", "csat_model_scored", "escalated_csat_delta",
           "csat_protected_deflection_csat_delta"}


class KpiRowLike(Protocol):
    archetype: str
    segment: str
    channel: str
    tickets: int
    values: Mapping[str, float]


def format_value(kpi: str, value: float | None) -> str:
    if value is None:
        return "-"
    if kpi in _COUNTS:
        return f"{value:.0f}"
    if kpi.endswith("_rate") or kpi in _RATIOS:
        return f"{100 * value:.1f}%"
    if kpi in _RELATIVE:
        return f"{100 * value:+.1f}%"
    if kpi.endswith("_seconds") or kpi in _SECONDS:
        return f"{value:.2f}s"
    if kpi in _DELTAS:
        return f"{value:+.1f}"
    return f"{value:.1f}"  # CSAT points


def format_kpi_table(rows: Sequence[KpiRowLike]) -> str:
    """One column per (archetype, segment, channel), one line per KPI in the panel's order (then the
    companion values that have data), in blocks of COLUMNS_PER_BLOCK columns so the table fits a
    terminal; "-" where a KPI has no data yet."""
    if not rows:
        return "No decided tickets yet."
    names = [kpi for kpi in KPI_NAMES + COMPANION_NAMES if kpi in KPI_NAMES or any(kpi in row.values for row in rows)]
    label_width = max(len(kpi) for kpi in names)
    blocks = []
    for start in range(0, len(rows), COLUMNS_PER_BLOCK):
        block = rows[start:start + COLUMNS_PER_BLOCK]
        headers = [f"{row.archetype}/{row.segment}/{row.channel or 'all'}" for row in block]
        cells = [[format_value(kpi, row.values.get(kpi)) for row in block] for kpi in names]
        widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(headers)]
        lines = ["  ".join([" " * label_width] + [h.rjust(w) for h, w in zip(headers, widths)])]
        lines.append("  ".join(["-" * label_width] + ["-" * w for w in widths]))
        for kpi, line in zip(names, cells):
            lines.append("  ".join([kpi.ljust(label_width)] + [c.rjust(w) for c, w in zip(line, widths)]))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def show_kpis(settings: FleetSettings, *, as_json: bool = False, out: TextIO = sys.stdout, tenant: str = "") -> int:
    """Print the panel for `tenant` (default: the settings' default tenant); exit code 1 when the
    learner cannot be reached."""
    tenant = tenant or settings.default_tenant
    channel = open_channel("cli", settings.learner_addr, settings.grpc_deadline_s)
    try:
        response = services_pb2_grpc.LearnerStub(channel).GetKpis(services_pb2.GetKpisRequest(tenant_id=tenant))
    except grpc.RpcError as err:
        print(f"learner at {settings.learner_addr} did not answer: {err.code().name} {err.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    if as_json:
        out.write(json.dumps({"tenant": tenant, **MessageToDict(response, preserving_proto_field_name=True)}, indent=2) + "\n")
    else:
        out.write(f"KPI panel for {tenant} (computed {response.computed_at.ToJsonString()})\n\n")
        out.write(format_kpi_table(list(response.rows)) + "\n")
    return 0


def write_weekly_report(settings: FleetSettings, since: str, out_dir: Path, *, tenant: str = "", out: TextIO = sys.stdout) -> int:
    """`supportflow report --since 7d --out DIR`: read the period from the topics, write DIR/index.html."""
    from tooling.decisions import read_history
    from supportflow.topics import DECISION_TOPICS, Topic

    from services.learner.config import LearnerConfig
    from services.learner.report import build_review, parse_since, write_report
    from services.learner.tenant_data import TenantData

    until = datetime.now(timezone.utc)
    start = until - timedelta(seconds=parse_since(since))
    topics = [*DECISION_TOPICS.values(), Topic.TICKETS_FEEDBACK, Topic.AGENT_ACTIONS, Topic.KB_GAPS,
              Topic.TICKETS_RECEIVED, Topic.TICKETS_DELIVERED, Topic.ROUTING_OVERRIDES, Topic.QA_SAMPLES]
    events = [event for _, event in read_history(settings, topics, int(start.timestamp() * 1000))]
    report = build_review(events, tenant or settings.default_tenant, LearnerConfig.load(settings.learner_config_path),
                          start, until, TenantData(settings.tenant_data_dir))
    page = write_report(report, out_dir)
    out.write(f"weekly review of {report.tenant}: {len(report.days)} day(s), {len(events)} events -> {page}\n")
    return 0
