"""`supportflow demo`: the main job. Real Kafka and Weaviate, every service in its own process,
sample tickets through the gateway's HTTP intake, and a summary of what came out; then simulated
outcomes of those tickets (its customers acting through their channels), the learner's KPI panel
and KB proposals, and a confirmed action.

Also used by the end-to-end test and the latency benchmark (`run_pipeline`).
"""

from __future__ import annotations

import collections
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Mapping

from google.protobuf.json_format import MessageToDict

from supportflow.contracts.v1 import events_pb2 as ev
from tooling.decisions import collect_decisions, decision_record, read_topic
from tooling.demo_outcomes import (
    CustomerAction, act_on_channels, as_json, format_outcomes, simulated_agent_feedback, simulated_customers,
)
from tooling.demo_report import build_report, format_summary
from supportflow.eventbus import delete_namespace_topics, ensure_topics
from tooling.fleet import ServiceFleet
from supportflow.topics import Topic
from tooling.settings import FleetSettings

if TYPE_CHECKING:
    from services.classifier.intent_catalog import IntentCatalog
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


def prepare(settings: FleetSettings, tenants: Collection[str] = ()) -> FleetSettings:
    """Everything the services need before they start: topics, a trained model (and one for each of
    `tenants` that has labelled examples of its own) and a history of resolved cases for the
    default tenant (and, for the Rho-Bank tenant, its sample KB; other tenants' help centers are
    synced by `index_knowledge`)."""
    from tooling.assets import ensure_demo_intent_model, ensure_sample_cases, ensure_sample_kb, ensure_tenant_intent_models

    ensure_topics(settings)
    say("intent model ...")
    model_dir = ensure_demo_intent_model(settings, progress=say)
    say(f"intent model ready: {model_dir}")
    tenant_models_dir = ensure_tenant_intent_models(settings, tenants, progress=say)
    if tenant_models_dir is not None:
        say(f"tenants' intent models ready: {tenant_models_dir}")
    if settings.default_tenant == SAMPLE_KB_TENANT:
        say("knowledge base ...")
        say(f"knowledge base ready: {ensure_sample_kb(settings, progress=say)}")
    say(f"resolved cases ready: {ensure_sample_cases(settings, progress=say)}")
    return settings.replace(intent_model_dir=model_dir, intent_models_dir=tenant_models_dir)


def post_ticket(settings: FleetSettings, payload: dict, attempts: int = 5) -> None:
    post_to_gateway(settings, "/v1/tickets", payload, payload.get("id"), attempts)


def post_to_gateway(settings: FleetSettings, path: str, payload: dict, what: object, attempts: int = 5) -> None:
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


def run_pipeline(settings: FleetSettings, tickets: list[dict], *, rate: float, timeout_s: float = 300.0) -> PipelineRun:
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


def _delete_run_topics(settings: FleetSettings) -> None:
    try:
        delete_namespace_topics(settings)
    except Exception as exc:  # noqa: BLE001 - leftover topics are untidy, not a failed demo
        say(f"could not delete this run's topics ({settings.topic_prefix}*): {exc}")


def customers_act(servers, records: list[dict], batch: list) -> list[CustomerAction]:  # noqa: ANN001
    """The simulated customers of tooling/demo_outcomes.py act on their tickets through the channel
    stand-ins (`records` as the round trip made them, `batch` the tickets sent, for the customers'
    addresses); returns what they did and the gateway's answers."""
    emails = {ticket.id: ticket.customer_email for ticket in batch}
    actions = simulated_customers([r | {"customer_email": emails.get(r["id"], "")} for r in records])
    say(f"simulated customers: {len(actions)} actions on their channels ...")
    return act_on_channels(servers.outcome, actions)


def post_outcomes(settings: FleetSettings, records: list[dict]) -> list[dict]:
    """What only agents can tell (a verdict on each review draft, each ticket's resolution), as a
    workspace integration would post it to the running gateway: the simulated agents' feedback of
    tooling/demo_outcomes.py; returns what was posted. The customers' outcomes come through their
    channels (`customers_act`)."""
    notes_by_intent: dict[str, str] = {}
    for case in sample_cases().values():
        notes_by_intent.setdefault(case.intent, case.resolution_notes)
    payloads = simulated_agent_feedback(records, notes_by_intent)
    for payload in payloads:
        post_to_gateway(settings, "/v1/feedback", payload, f"{payload['kind']} feedback on {payload['ticket_id']}")
    return payloads


def outcome_totals(decided: list[dict], feedback: list[dict]) -> dict[str, int]:
    """What the learner's panel counts once every outcome posted has been read: each decided
    ticket ended, and each posted resolution and draft verdict counted. The helpdesks' own status
    changes end most tickets before the agents' feedback is read, so the endings alone do not say
    the feedback has been."""
    kinds = [payload["kind"] for payload in feedback]
    return {"tickets_resolved": len(decided), "resolutions_reported": kinds.count("resolution"),
            "drafts_with_verdict": kinds.count("draft_verdict")}


def learner_panel(settings: FleetSettings, decided: int, *, totals: Mapping[str, int] | None = None,
                  timeout_s: float = 20.0) -> list | None:
    """The learner's KPI rows for the default tenant (every archetype x segment x channel cut and
    the rollups), asked until the per-archetype rollups count `decided` tickets and reach each of
    `totals` (absolute counts by value name, e.g. tickets_resolved, drafts_with_verdict), or
    `timeout_s` passes (the last answer then); None when the learner never answered."""
    import grpc

    from supportflow.contracts.v1 import services_pb2, services_pb2_grpc
    from supportflow.rpc import open_channel

    request = services_pb2.GetKpisRequest(tenant_id=settings.default_tenant)
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
            rollups = [row for row in rows or [] if row.segment == "all" and row.channel == "all"]
            reached = sum(row.tickets for row in rollups) >= decided and all(
                sum(row.values.get(name, 0) for row in rollups) >= count for name, count in (totals or {}).items())
            if reached or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)
    finally:
        channel.close()


def learner_kpis_json(rows: list) -> list[dict]:
    """The panel's rows for the JSON report: every KPI name on every row (null where the cut has
    nothing to compute it from yet, e.g. no CSAT survey), so a reader sees the whole panel per cut."""
    from services.learner.kpis import KPI_NAMES

    out = []
    for row in rows:
        record = MessageToDict(row, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        record["values"] = {name: row.values[name] if name in row.values else None for name in KPI_NAMES} | {
            name: value for name, value in row.values.items() if name not in KPI_NAMES}
        out.append(record)
    return out


def format_learner_panel(rows: list | None) -> str:
    from tooling.commands.learner import format_kpi_table

    lines = ["What the learner counted", "------------------------"]
    if rows is None:
        return "\n".join(lines + ["the learner did not answer (its log is in the demo's log folder)"]) + "\n"
    lines += [
        "The learner's KPIs per archetype, from Learner.GetKpis (`supportflow kpis` in a deployment;",
        "the JSON report has every cut by segment and channel too).",
        "The decisions and timings are this run's; the outcomes (CSAT, verdicts, resolutions) are the",
        "simulated ones above. A KPI with nothing to count yet shows \"-\".",
        "",
        format_kpi_table([row for row in rows if row.segment == "all" and row.channel == "all"]),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class ActionsShown:
    proposals: list[ev.ActionRecorded]
    confirmed: list[ev.ActionRecorded]  # the records of the confirmations the demo sent


def confirm_a_proposal(settings: FleetSettings, *, timeout_s: float = 20.0) -> ActionsShown:
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


def write_review_page(settings: FleetSettings, out_dir: Path) -> Path | None:
    """The weekly review page (`supportflow report --since 1d`) of this run's topics, or None when
    it could not be written (the demo's other results stand without it)."""
    import io

    from tooling.commands.learner import write_weekly_report

    try:
        write_weekly_report(settings, "1d", out_dir, out=io.StringIO())
    except Exception as exc:  # noqa: BLE001 - a missing page is reported, not a failed demo
        say(f"could not write the review page: {exc}")
        return None
    return out_dir / "index.html"


def sample_cases(tenant: str | None = None) -> dict[str, ResolvedCase]:
    """A tenant's resolved cases (the demo bank's by default) by ticket id, to show what a packet's
    similar cases say."""
    from services.retriever.case_files import load_cases
    from tooling.round_trip import DEMO_TENANT, resolved_cases_path

    path = resolved_cases_path(tenant or DEMO_TENANT)
    return {case.ticket_id: case for case in load_cases(path)} if path.is_file() else {}


def channels_file(path: Path, servers, accounts: list) -> Path:  # noqa: ANN001 - tooling.channel_servers
    """The per-tenant channels file for the stand-ins (supportflow/channels.py), private to this run."""
    import yaml

    tenants = {}
    for a in accounts:
        tenants[a.tenant] = {
            "help_center_url": f"{servers.zendesk_url}/hc/en-us",
            "zendesk": {"base_url": servers.zendesk_url, "email": a.zendesk_email, "api_token": a.zendesk_api_token,
                        "webhook_secret": a.zendesk_webhook_secret},
            "intercom": {"base_url": servers.intercom_url, "access_token": a.intercom_access_token,
                         "client_secret": a.intercom_client_secret, "admin_id": a.intercom_admin_id},
            "freshdesk": {"base_url": servers.freshdesk_url, "api_key": a.freshdesk_api_key,
                          "webhook_secret": a.freshdesk_webhook_secret},
            "email": {"address": a.mailbox, "smtp_host": servers.mail_smtp.split(":")[0],
                      "smtp_port": int(servers.mail_smtp.split(":")[1]), "smtp_starttls": False,
                      "notes_address": f"agents@{a.mailbox.split('@')[1]}"},
            "api": {"callback_url": servers.api_callback_url, "signing_secret": a.api_callback_secret},
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"tenants": tenants}, sort_keys=False))
    return path


def account_systems(run_dir: Path, tickets: list, started: list) -> Path:
    """The tenants' systems of record: for each tenant with a scenario file
    (tenants/<tenant>/systems/scenarios.yaml), an account system seeded from its tickets, appended
    to `started`; returns the systems file that points the investigator at them (a tenant without
    one gets empty investigations)."""
    from tooling.demo_systems import AccountSystemProcess, systems_file
    from tooling.round_trip import TENANTS_DIR

    by_tenant = {}
    for tenant in sorted({t.tenant for t in tickets}):
        scenarios = TENANTS_DIR / tenant / "systems" / "scenarios.yaml"
        if scenarios.is_file():
            system = AccountSystemProcess(run_dir / "systems" / tenant, [t for t in tickets if t.tenant == tenant],
                                          scenarios=scenarios)
            started.append(system.start())
            by_tenant[tenant] = system
    say("systems of record: " + (", ".join(f"{t} {s.url}" for t, s in by_tenant.items()) or "none"))
    return systems_file(run_dir / "systems.yaml", by_tenant)


def tenant_accounts(tenant: str, gateway_url: str):  # noqa: ANN201
    """Fresh credentials for one tenant on the stand-ins, and the help center they serve."""
    from tooling.channel_servers import TenantAccounts
    from tooling.round_trip import help_center_dir

    folder = help_center_dir(tenant)
    return TenantAccounts(
        tenant=tenant, gateway_url=gateway_url,
        zendesk_email=f"supportflow@{tenant}.example", zendesk_api_token=secrets.token_hex(16),
        zendesk_webhook_secret=secrets.token_hex(16),
        intercom_access_token=secrets.token_hex(16), intercom_client_secret=secrets.token_hex(16),
        intercom_admin_id="9" + str(secrets.randbelow(10**6)).zfill(6),
        freshdesk_api_key=secrets.token_hex(12), freshdesk_webhook_secret=secrets.token_hex(16),
        mailbox=f"support@{tenant}.example", api_callback_secret=secrets.token_hex(16),
        help_center_dir=str(folder) if folder.is_dir() else "",
    )


def index_knowledge(settings: FleetSettings, tenants: set[str]) -> dict:
    """Each tenant's knowledge base: a help center synced from its Zendesk Help Center API (here the
    stand-in), as a deployment's would be; Rho-Bank's sample KB imported from its file."""
    from services.retriever.sync import sync_help_center
    from tooling.assets import ensure_sample_kb
    from tooling.round_trip import help_center_dir

    summaries = {}
    channels = settings.channels()
    for tenant in sorted(tenants):
        configured = channels.tenant(tenant)
        if help_center_dir(tenant).is_dir() and configured is not None and configured.zendesk is not None:
            summaries[tenant] = sync_help_center(settings, tenant, configured.zendesk)
        elif tenant == SAMPLE_KB_TENANT:
            summaries[tenant] = ensure_sample_kb(settings.replace(default_tenant=tenant), progress=say)
        else:
            raise RuntimeError(f"no knowledge base for tenant {tenant!r}: add tenants/{tenant}/help-center/")
    return summaries


SAMPLE_KB_TENANT = "rho-bank"


def run_round_trip(settings: FleetSettings, tickets: list, *, rate: float, run_dir: Path,
                   timeout_s: float = 300.0,
                   while_sending: Callable[[ServiceFleet, threading.Event], None] | None = None) -> RoundTrip:
    """Start the channel stand-ins and every service, send `tickets` through their channels at
    `rate` a second, and collect each ticket's decision and what its channel received.
    `while_sending(fleet, sent)` runs on a thread of its own from the services' start until the
    last ticket is sent (then `sent` is set), e.g. to watch the services' backlogs."""
    from tooling.channel_servers import ChannelServers, ChannelServersConfig
    from tooling.fleet import free_port
    from tooling.round_trip import ChannelSender, wait_for_deliveries
    from services.classifier.tenant_data import tenant_catalogs

    tenants = {t.tenant for t in tickets}
    settings = settings.replace(gateway_http_port=free_port(), gateway_smtp_port=free_port(),
                                gateway_smtp_host="127.0.0.1",
                                delivery_ledger_url=f"sqlite:///{run_dir / 'delivery-ledger.sqlite'}",
                                workspace_http_port=free_port(),
                                workspace_db_url=f"sqlite:///{run_dir / 'workspace.sqlite'}",
                                workspace_admin_password=settings.workspace_admin_password or secrets.token_urlsafe(12),
                                workspace_session_secret=settings.workspace_session_secret or secrets.token_hex(32))
    gateway_url = f"http://127.0.0.1:{settings.gateway_http_port}"
    accounts = [tenant_accounts(tenant, gateway_url) for tenant in sorted(tenants)]
    servers = ChannelServers(ChannelServersConfig(
        tenants=tuple(accounts), state_dir=str(run_dir / "channel-servers"),
        gateway_smtp=f"127.0.0.1:{settings.gateway_smtp_port}"))
    servers.start()
    fleet = None
    systems: list = []
    try:
        settings = settings.replace(channels_path=channels_file(run_dir / "channels.yaml", servers, accounts))
        settings = settings.replace(systems_path=account_systems(run_dir, tickets, systems))
        say("channel stand-ins: " + ", ".join(f"{name} {url}" for name, url in (
            ("zendesk", servers.zendesk_url), ("intercom", servers.intercom_url),
            ("freshdesk", servers.freshdesk_url), ("mail (SMTP)", servers.mail_smtp))))
        ready = prepare(settings, tenants)
        say(f"knowledge: {index_knowledge(ready, tenants)}")
        fleet = ServiceFleet(ready, run_dir / "logs")
        say(f"starting the services (logs in {run_dir / 'logs'}) ...")
        fleet.start()
        sender = ChannelSender(servers, lambda payload: post_ticket(fleet.settings, payload))
        all_sent = threading.Event()
        watcher = None
        if while_sending is not None:
            watcher = threading.Thread(target=while_sending, args=(fleet, all_sent), daemon=True)
            watcher.start()
        started = time.monotonic()
        interval = 1.0 / rate if rate > 0 else 0.0
        sent = []
        try:
            for index, ticket in enumerate(tickets):
                delay = started + index * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent.append(sender.send(ticket))
        finally:
            all_sent.set()
            if watcher is not None:
                watcher.join(30)
        say(f"sent {len(sent)} tickets through their channels in {time.monotonic() - started:.1f}s; "
            "waiting for decisions and deliveries ...")
        by_pipeline_id = {s.pipeline_id: s for s in sent}
        catalogs = tenant_catalogs(settings.tenant_data_dir)
        found = collect_decisions(fleet.settings, set(by_pipeline_id), timeout_s)
        delivered = wait_for_deliveries(servers, sent, timeout_s=60.0, progress=say)
        wall = time.monotonic() - started
        records = []
        for s in sent:
            events = found.get(s.pipeline_id)
            record = decision_record(events[0]) if events else {"decision": "", "intent": "", "archetype": ""}
            record |= {"id": s.ticket.id, "ticket_id": s.pipeline_id, "channel_in": s.ticket.channel, "sent_at": s.sent_at,
                       "received_at": events[0].ticket.received_at.ToJsonString() if events else "",
                       "external_id": s.external_id, "tenant_id": s.ticket.tenant, "label": s.ticket.label,
                       "true_archetype": _true_archetype(s.ticket.label, s.ticket.tenant, catalogs),
                       "delivered": _kinds_named(delivered.get(s.ticket.id, []), record["decision"])}
            records.append(record)
        return RoundTrip(
            records=records, sent=[s.ticket.id for s in sent],
            missing=[s.ticket.id for s in sent if s.pipeline_id not in found],
            duplicated=[by_pipeline_id[t].ticket.id for t, events in found.items() if len(events) > 1],
            undelivered=[s.ticket.id for s in sent if s.ticket.id not in delivered],
            wall_s=wall, fleet_settings=fleet.settings, servers=servers, fleet=fleet, systems=systems,
            workspace_url=f"http://127.0.0.1:{settings.workspace_http_port}",
        )
    except BaseException:
        if fleet is not None:
            fleet.stop()
        servers.stop()
        for system in systems:
            system.stop()
        raise


def pipeline_records(records: list[dict]) -> list[dict]:
    """The decided tickets' records under the pipeline's ticket ids (zd-..., em-...), as the
    learner and the helpdesk's feedback know them; the report keeps the input's ids."""
    return [record | {"id": record["ticket_id"]} for record in records if record["decision"]]


def _kinds_named(items: list[dict], decision: str) -> list[dict]:
    """A helpdesk shows a follow-up as a public reply like any other; on a ticket whose decision
    was to ask for more, that public message is the follow-up."""
    if decision != "follow_up":
        return items
    return [item | {"kind": "follow_up"} if item["kind"] == "reply" else item for item in items]


def _true_archetype(label: str, tenant: str, catalogs: Mapping[str, IntentCatalog]) -> str:
    """The archetype of the ticket's true intent, in its tenant's catalog (the shipped one for a
    tenant without its own)."""
    from services.classifier.intent_catalog import archetype_name, default_catalog

    if not label or ":" in label:
        return ""
    return archetype_name(catalogs.get(tenant, default_catalog()).archetype(label))


@dataclass
class RoundTrip:
    records: list[dict]
    sent: list[str]
    missing: list[str]  # no decision
    duplicated: list[str]  # more than one decision
    undelivered: list[str]  # nothing reached the ticket's channel
    wall_s: float
    fleet_settings: FleetSettings
    servers: object
    fleet: object
    workspace_url: str = ""
    systems: list = field(default_factory=list)  # the tenants' account systems (tooling/demo_systems)

    def stop(self) -> None:
        self.fleet.stop()
        self.servers.stop()
        for system in self.systems:
            system.stop()

    def pids(self) -> dict[str, int]:
        """The process of every service and of the channel stand-ins, by name."""
        pids = {service.name: service.process.pid for service in self.fleet.running}
        if self.servers.process is not None:
            pids["channel-stand-ins"] = self.servers.process.pid
        for system in self.systems:
            if system.process is not None:
                pids["account-system"] = system.process.pid
        return pids


def running_file(settings: FleetSettings) -> Path:
    """Where `demo --keep-running` notes what it left running, for `supportflow down`."""
    return settings.cache_dir / "state" / "demo-running.json"


def stop_running_demo(settings: FleetSettings) -> list[str]:
    """Stop what `demo --keep-running` left running (its services and channel stand-ins, each a
    process group of its own); returns their names."""
    import os
    import signal

    path = running_file(settings)
    if not path.exists():
        return []
    stopped = []
    for name, pid in json.loads(path.read_text()).get("pids", {}).items():
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped.append(name)
        except (ProcessLookupError, PermissionError):
            pass
    path.unlink()
    return stopped


def run_demo(settings: FleetSettings, *, tickets: int, input_path: str | None, json_path: str | None, rate: float,
             keep_infra: bool, keep_running: bool = False) -> int:
    from services.learner.config import LearnerConfig
    from tooling.devinfra.stack import LocalStack
    from tooling.round_trip import DEMO_TENANT, InputError, help_center_dir, load_help_center, read_input, sample_tickets

    run_id = f"demo-{uuid.uuid4().hex[:6]}"
    try:
        batch = read_input(Path(input_path)) if input_path else sample_tickets(tickets, run_id=run_id)
    except InputError as exc:
        print(f"supportflow demo: {exc}", file=sys.stderr)
        return 2
    stack = LocalStack(settings)
    say("starting Kafka and Weaviate (the first run builds and downloads them: many minutes) ...")
    stack.install()
    addresses = stack.up()
    say("infrastructure: " + ", ".join(f"{k} {v}" for k, v in addresses.items()))
    # Each run has topics of its own, so what it reports (the learner's panel too) is this run alone.
    # Its gateway takes signed requests only, as a deployment's would (confirmations need it).
    tenants = sorted({t.tenant for t in batch})
    settings = settings.replace(topic_prefix=f"{settings.topic_prefix}{run_id}.",
                                default_tenant=DEMO_TENANT if DEMO_TENANT in tenants else tenants[0],
                                gateway_webhook_secret=settings.gateway_webhook_secret or secrets.token_hex(16))
    run_dir = settings.cache_dir / "demo-runs" / run_id
    trip = None
    try:
        trip = run_round_trip(settings, batch, rate=rate, run_dir=run_dir)
        decided = pipeline_records(trip.records)
        customers = customers_act(trip.servers, trip.records, batch)
        feedback = post_outcomes(trip.fleet_settings, decided)
        panel = learner_panel(trip.fleet_settings, len(decided), totals=outcome_totals(decided, feedback))
        kb_proposals = read_topic(trip.fleet_settings, Topic.KB_PROPOSALS)
        actions = confirm_a_proposal(trip.fleet_settings)
        review_page = write_review_page(trip.fleet_settings, settings.cache_dir / "demo-reports" / run_id)
    finally:
        if trip is not None and keep_running:
            running_file(settings).parent.mkdir(parents=True, exist_ok=True)
            running_file(settings).write_text(json.dumps({"run": run_id, "pids": trip.pids(),
                                                          "workspace": trip.workspace_url}))
        elif trip is not None:
            trip.stop()
        keep_infra = keep_infra or keep_running
        if keep_infra:
            say(f"this run's topics are the ones named {settings.topic_prefix}*")
        else:
            _delete_run_topics(settings)
        if not keep_infra and stack.started_by_us:
            say("stopping the Kafka and Weaviate this demo started (use --keep-infra to keep them)")
            stack.down(stack.started_by_us)
    report = build_report(
        [r for r in trip.records if r["decision"]], tickets_sent=len(trip.sent), missing=trip.missing,
        duplicated=trip.duplicated, wall_s=trip.wall_s,
    )
    report["tickets"] = trip.records
    report["summary"]["undelivered"] = trip.undelivered
    articles = load_help_center(help_center_dir(settings.default_tenant)) if help_center_dir(settings.default_tenant).is_dir() else {}
    report["round_trip"] = round_trip_summary(trip.records, articles)
    print(format_summary(report, cases=sample_cases()))
    print(format_round_trip(report))
    print(format_outcomes(customers, trip.records, feedback, kb_proposals,
                          LearnerConfig.load().knowledge.proposal_min_tickets))
    print(format_learner_panel(panel))
    print(format_actions(actions))
    if review_page is not None:
        print(f"The learner's review page of this run (`supportflow report` in a deployment): {review_page}")
    login = f"user {trip.fleet_settings.workspace_admin_user}, password {trip.fleet_settings.workspace_admin_password}"
    if keep_running:
        print(f"The agents' workspace: {trip.workspace_url} ({login}). Everything keeps running; "
              "`bin/supportflow down` stops it.")
    else:
        print(f"The agents' workspace ran at {trip.workspace_url} during the run (`--keep-running` leaves it up).")
    if json_path:
        report["simulated_feedback"] = feedback
        report["simulated_customers"] = as_json(customers)
        report["kb_proposals"] = [MessageToDict(proposal, preserving_proto_field_name=True) for proposal in kb_proposals]
        report["learner_kpis"] = learner_kpis_json(panel or [])
        report["actions"] = [MessageToDict(record, preserving_proto_field_name=True)
                             for record in actions.proposals + actions.confirmed]
        report["workspace"] = {"url": trip.workspace_url, "running": keep_running}
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"per-ticket report: {json_path}")
    return 0 if not (trip.missing or trip.duplicated or trip.undelivered) else 1


def round_trip_summary(records: list[dict], articles: dict) -> dict:
    from tooling.round_trip import decisions_by_channel, round_trip_quality

    delivered = collections.Counter()
    for r in records:
        for item in r["delivered"]:
            delivered[(r["channel_in"], item["kind"])] += 1
    return {
        "by_channel": {channel: dict(counts) for channel, counts in decisions_by_channel(records).items()},
        "delivered": {f"{channel}:{kind}": n for (channel, kind), n in sorted(delivered.items())},
        "quality": round_trip_quality(records, articles) if articles else {},
    }


EXAMPLE_LINES = 30  # of an example reply or note in the summary (blank lines left out)


def _share(value: float | None) -> str:
    return "- (no replies)" if value is None else f"{value:.1%}"


def format_round_trip(report: dict) -> str:
    from tooling.round_trip import iter_examples

    trip = report["round_trip"]
    lines = ["What reached each channel", "-------------------------"]
    for channel, decisions in sorted(trip["by_channel"].items()):
        arrived = {k.split(":")[1]: n for k, n in trip["delivered"].items() if k.startswith(channel + ":")}
        lines.append(f"{channel:<10} decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items()))
                     + " | received: " + (", ".join(f"{k} {v}" for k, v in sorted(arrived.items())) or "nothing"))
    undelivered = report["summary"]["undelivered"]
    lines.append(f"tickets with nothing delivered on their channel: {len(undelivered)}"
                 + (f" ({', '.join(undelivered[:10])})" if undelivered else ""))
    quality = trip["quality"].get("all")
    if quality:
        lines.append(
            f"labelled tickets: {quality['tickets']}, answered automatically {quality['answered_automatically']} "
            f"({quality['auto_answer_share']:.1%}); first citation on the true intent: "
            f"{_share(quality['primary_citation_on_true_intent'])}; most articles cited in a reply: "
            f"{quality['max_articles_cited']}; replies with a number neither their articles nor the account evidence hold: "
            f"{quality['replies_with_unsupported_numbers']}")
    for kind, title in (("reply", "An answer sent to a customer"), ("note", "A note left for the agents")):
        for record, item in iter_examples(report["tickets"], kind):
            lines += ["", f"{title} ({record['channel_in']}, ticket {record['external_id']}, intent {record['intent']}):"]
            text = [line for line in item["text"].strip().splitlines() if line.strip()]
            lines += ["    " + line for line in text[:EXAMPLE_LINES]]
            if len(text) > EXAMPLE_LINES:
                lines.append(f"    ... ({len(text) - EXAMPLE_LINES} more lines)")
            break
    return "\n".join(lines) + "\n"
