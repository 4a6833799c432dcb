"""`supportflow demo`: the main job. Real Kafka and Weaviate, every service in its own process,
sample tickets through the gateway's HTTP intake, and a summary of what came out; then simulated
outcomes of those tickets, the learner's KPI panel and KB proposals, and a confirmed action.

Also used by the end-to-end test and the latency benchmark (`run_pipeline`).
"""

from __future__ import annotations

import collections
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf.json_format import MessageToDict

from supportflow.contracts.v1 import events_pb2 as ev
from tooling.decisions import collect_decisions, decision_record, read_topic
from tooling.demo_outcomes import format_outcomes, simulated_feedback
from tooling.demo_report import build_report, format_summary
from supportflow.eventbus import delete_namespace_topics, ensure_topics
from tooling.fleet import ServiceFleet
from tooling.sample_tickets import demo_tickets
from supportflow.settings import Settings
from supportflow.topics import Topic

if TYPE_CHECKING:
    from services.retriever.search import ResolvedCase


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


@dataclass
class PipelineRun:
    records: list[dict]
    sent: list[str]
    missing: list[str]
    duplicated: list[str]
    wall_s: float


def prepare(settings: Settings) -> Settings:
    """Everything the services need before they start: topics, a trained model, an indexed KB and
    a history of resolved cases."""
    from tooling.assets import ensure_demo_intent_model, ensure_sample_cases, ensure_sample_kb

    ensure_topics(settings)
    say("intent model ...")
    model_dir = ensure_demo_intent_model(settings, progress=say)
    say(f"intent model ready: {model_dir}")
    say("knowledge base ...")
    summary = ensure_sample_kb(settings, progress=say)
    say(f"knowledge base ready: {summary}")
    say(f"resolved cases ready: {ensure_sample_cases(settings, progress=say)}")
    return settings.replace(intent_model_dir=model_dir)


def post_ticket(settings: Settings, payload: dict, attempts: int = 5) -> None:
    post_to_gateway(settings, "/v1/tickets", payload, payload.get("id"), attempts)


def post_to_gateway(settings: Settings, path: str, payload: dict, what: object, attempts: int = 5) -> None:
    """POST `payload` to the running gateway, signed when it has a webhook secret; its retries
    carry the same Idempotency-Key, so one that follows a lost answer is not a second event."""
    from services.gateway.intake import IDEMPOTENCY_HEADER, signed_headers

    body = json.dumps(payload).encode()
    key = uuid.uuid4().hex
    for attempt in range(attempts):
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
        if settings.gateway_webhook_secret:
            headers |= signed_headers(settings.gateway_webhook_secret, body)  # signed at each attempt
        request = urllib.request.Request(
            f"http://127.0.0.1:{settings.gateway_http_port}{path}", data=body, method="POST", headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                if response.status == 202:
                    return
        except urllib.error.HTTPError as err:
            if err.code < 500:
                raise RuntimeError(f"gateway refused {what}: {err.code} {err.read()[:200]!r}") from err
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"gateway did not accept {what} after {attempts} attempts")


def run_pipeline(settings: Settings, tickets: list[dict], *, rate: float, timeout_s: float = 300.0) -> PipelineRun:
    """Send `tickets` through the running gateway at `rate` per second and collect every decision."""
    started = time.monotonic()
    interval = 1.0 / rate if rate > 0 else 0.0
    for index, payload in enumerate(tickets):
        due = started + index * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        post_ticket(settings, payload)
    sent = [t["id"] for t in tickets]
    say(f"sent {len(sent)} tickets in {time.monotonic() - started:.1f}s; waiting for decisions ...")
    found = collect_decisions(settings, set(sent), timeout_s)
    wall = time.monotonic() - started
    records = [decision_record(events[0]) for ticket_id in sent for events in [found.get(ticket_id)] if events]
    return PipelineRun(
        records=records,
        sent=sent,
        missing=[t for t in sent if t not in found],
        duplicated=[t for t, events in found.items() if len(events) > 1],
        wall_s=wall,
    )


def _delete_run_topics(settings: Settings) -> None:
    try:
        delete_namespace_topics(settings)
    except Exception as exc:  # noqa: BLE001 - leftover topics are untidy, not a failed demo
        say(f"could not delete this run's topics ({settings.topic_prefix}*): {exc}")


def post_outcomes(settings: Settings, records: list[dict]) -> list[dict]:
    """Tell the learner how every decided ticket ended, as a helpdesk would: the simulated feedback
    of tooling/demo_outcomes.py, posted to the running gateway; returns what was posted."""
    notes_by_intent: dict[str, str] = {}
    for case in sample_cases().values():
        notes_by_intent.setdefault(case.intent, case.resolution_notes)
    payloads = simulated_feedback(records, notes_by_intent)
    for payload in payloads:
        post_to_gateway(settings, "/v1/feedback", payload, f"{payload['kind']} feedback on {payload['ticket_id']}")
    return payloads


def learner_panel(settings: Settings, decided: int, *, resolved: int = 0, timeout_s: float = 20.0) -> list | None:
    """The learner's KPI rollups per archetype (segment "all") for the default tenant, asked until
    they count `decided` tickets and `resolved` resolutions or `timeout_s` passes (the last answer
    then); None when the learner never answered."""
    import grpc

    from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
    from supportflow.rpc import open_channel

    request = services_pb2.GetKpisRequest(tenant_id=settings.default_tenant, segment="all")
    channel = open_channel("demo", settings.learner_addr, settings.grpc_deadline_s)
    deadline = time.monotonic() + timeout_s
    rows = None
    try:
        stub = services_pb2_grpc.LearnerStub(channel)
        while True:
            try:
                rows = list(stub.GetKpis(request).rows)
            except grpc.RpcError as err:
                say(f"learner did not answer yet: {err.code().name}")
            counted = sum(row.values.get("tickets_decided", 0) for row in rows or [])
            ended = sum(row.values.get("resolved_tickets", 0) for row in rows or [])
            if (counted >= decided and ended >= resolved) or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)
    finally:
        channel.close()


def format_learner_panel(rows: list | None) -> str:
    from services.learner.cli import format_kpi_table

    lines = ["What the learner counted", "------------------------"]
    if rows is None:
        return "\n".join(lines + ["the learner did not answer (its log is in the demo's log folder)"]) + "\n"
    lines += [
        "The learner's KPIs per archetype, from Learner.GetKpis (`supportflow kpis` in a deployment).",
        "The decisions and timings are this run's; the outcomes (CSAT, verdicts, resolutions) are the",
        "simulated ones above. A KPI with nothing to count yet shows \"-\".",
        "",
        format_kpi_table(rows),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class ActionsShown:
    proposals: list[ev.ActionRecorded]
    confirmed: list[ev.ActionRecorded]  # the records of the confirmations the demo sent


def confirm_a_proposal(settings: Settings, *, timeout_s: float = 20.0) -> ActionsShown:
    """The run's proposed actions, and the first one confirmed through the gateway as its customer
    would confirm it, twice (the second stands for a redelivered confirmation)."""
    proposals = [r for r in read_topic(settings, Topic.ACTIONS_RECORDED) if r.status == ev.ACTION_STATUS_PROPOSED]
    if not proposals:
        return ActionsShown(proposals, [])
    first = proposals[0]
    confirmation = {"proposal_id": first.action_id, "ticket_id": first.ticket_id, "tenant_id": first.meta.tenant_id,
                    "confirmation_ref": f"demo-sms-{first.ticket_id}", "confirmed_by": "customer:sms"}
    for _ in range(2):
        post_to_gateway(settings, "/v1/actions/confirm", confirmation, f"a confirmation of {first.action_id}")

    def confirmations(records: list[ev.ActionRecorded]) -> list[ev.ActionRecorded]:
        return [r for r in records if r.proposal_id == first.action_id or r.confirmation_ref == confirmation["confirmation_ref"]]

    records = read_topic(settings, Topic.ACTIONS_RECORDED, until=lambda records: len(confirmations(records)) >= 2,
                         timeout_s=timeout_s)
    return ActionsShown(proposals, confirmations(records))


def format_actions(shown: ActionsShown) -> str:
    lines = ["Actions", "-------"]
    if not shown.proposals:
        return "\n".join(lines + ["no ticket in this run led to a proposed action"]) + "\n"
    tools = collections.Counter(p.tool for p in shown.proposals)
    lines += [
        f"proposed {len(shown.proposals)} ({', '.join(f'{tool} {n}' for tool, n in tools.most_common())}); "
        "an action runs only once its customer confirms it (`POST /v1/actions/confirm`), dry-run by default.",
        f"[{shown.proposals[0].ticket_id}] {shown.proposals[0].tool} proposed: {shown.proposals[0].reason}",
    ]
    for index, record in enumerate(shown.confirmed):
        what = "confirmed by the customer" if index == 0 else "the same confirmation sent again"
        status = ev.ActionStatus.Name(record.status).removeprefix("ACTION_STATUS_").lower()
        lines.append(f"    {what} -> {status}: {record.reason}")
    if len(shown.confirmed) < 2:
        lines.append("    (no record of the confirmations came back in time: see the escalator's log)")
    return "\n".join(lines) + "\n"


def write_review_page(settings: Settings, out_dir: Path) -> Path | None:
    """The weekly review page (`supportflow report --since 1d`) of this run's topics, or None when
    it could not be written (the demo's other results stand without it)."""
    import io

    from services.learner.cli import write_weekly_report

    try:
        write_weekly_report(settings, "1d", out_dir, out=io.StringIO())
    except Exception as exc:  # noqa: BLE001 - a missing page is reported, not a failed demo
        say(f"could not write the review page: {exc}")
        return None
    return out_dir / "index.html"


def sample_cases() -> dict[str, ResolvedCase]:
    """The sample resolved cases by ticket id, to show what a packet's similar cases say."""
    from services.retriever.case_files import load_cases
    from supportflow.sample_data import path as sample_path

    return {case.ticket_id: case for case in load_cases(sample_path("resolved_cases.jsonl"))}


def run_demo(settings: Settings, *, tickets: int, json_path: str | None, rate: float, keep_infra: bool) -> int:
    from services.learner.config import LearnerConfig
    from supportflow.devinfra.stack import LocalStack

    stack = LocalStack(settings)
    say("starting Kafka and Weaviate (the first run builds and downloads them: many minutes) ...")
    stack.install()
    addresses = stack.up()
    say("infrastructure: " + ", ".join(f"{k} {v}" for k, v in addresses.items()))
    run_id = f"demo-{uuid.uuid4().hex[:6]}"
    # Each run has topics of its own, so what it reports (the learner's panel too) is this run alone.
    # Its gateway takes signed requests only, as a deployment's would (confirmations need it).
    settings = settings.replace(topic_prefix=f"{settings.topic_prefix}{run_id}.",
                                gateway_webhook_secret=settings.gateway_webhook_secret or secrets.token_hex(16))
    fleet = None
    try:
        ready = prepare(settings)
        log_dir = settings.cache_dir / "demo-logs" / time.strftime("%Y%m%d-%H%M%S")
        fleet = ServiceFleet(ready, log_dir)
        say(f"starting the six services (logs in {log_dir}) ...")
        fleet.start()
        payloads = list(demo_tickets(tickets, run_id=run_id))
        result = run_pipeline(ready, payloads, rate=rate)
        feedback = post_outcomes(fleet.settings, result.records)
        panel = learner_panel(fleet.settings, len(result.records), resolved=len(result.records))
        kb_proposals = read_topic(fleet.settings, Topic.KB_PROPOSALS)
        actions = confirm_a_proposal(fleet.settings)
        review_page = write_review_page(fleet.settings, settings.cache_dir / "demo-reports" / run_id)
    finally:
        if fleet is not None:
            fleet.stop()
        if keep_infra:
            say(f"this run's topics are the ones named {settings.topic_prefix}*")
        else:
            _delete_run_topics(settings)
        if not keep_infra and stack.started_by_us:
            say("stopping the Kafka and Weaviate this demo started (use --keep-infra to keep them)")
            stack.down(stack.started_by_us)
    report = build_report(
        result.records, tickets_sent=len(result.sent), missing=result.missing,
        duplicated=result.duplicated, wall_s=result.wall_s,
    )
    print(format_summary(report, cases=sample_cases()))
    print(format_outcomes(feedback, kb_proposals, LearnerConfig.load().knowledge.proposal_min_tickets))
    print(format_learner_panel(panel))
    print(format_actions(actions))
    if review_page is not None:
        print(f"The learner's review page of this run (`supportflow report` in a deployment): {review_page}")
    if json_path:
        report["simulated_feedback"] = feedback
        report["kb_proposals"] = [MessageToDict(proposal, preserving_proto_field_name=True) for proposal in kb_proposals]
        report["learner_kpis"] = [MessageToDict(row, preserving_proto_field_name=True) for row in panel or []]
        report["actions"] = [MessageToDict(record, preserving_proto_field_name=True)
                             for record in actions.proposals + actions.confirmed]
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"per-ticket report: {json_path}")
    return 0 if not result.missing and not result.duplicated else 1
