"""The demo's customers and channels: tickets sent the way each channel sends them (a Zendesk
ticket, an Intercom conversation, a Freshdesk ticket, a mail, a signed API call) through the local
provider stand-ins, and what each ticket got back, read from what the stand-ins received, not from
what the pipeline meant to send.

Also the round trip's quality figures on labelled tickets: how many were answered without an
agent, whether the reply's first citation answers the ticket's true intent, how many articles a
reply cites, and whether every number in a reply is in the articles it cites.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import yaml
from bs4 import BeautifulSoup

CHANNELS = ("zendesk", "intercom", "freshdesk", "email", "api")
DEMO_TENANT = "demo-bank"
TENANTS_DIR = Path(__file__).resolve().parents[1] / "tenants"


class InputError(ValueError):
    """The --input file cannot be used; the message names the line and the field."""


@dataclass(frozen=True)
class DemoTicket:
    id: str
    tenant: str
    channel: str
    subject: str
    body: str
    customer_id: str
    customer_email: str
    label: str = ""  # the true intent, when known (sample tickets); never sent to the pipeline


@dataclass
class SentTicket:
    ticket: DemoTicket
    pipeline_id: str  # the ticket id the pipeline gives it (zd-..., ic-..., em-...)
    external_id: str  # the channel's own ticket, conversation or thread id
    sent_at: float  # when the customer started opening it (Unix seconds)


def help_center_dir(tenant: str) -> Path:
    return TENANTS_DIR / tenant / "help-center"


def resolved_cases_path(tenant: str) -> Path:
    """The tenant's resolved-case history (`supportflow cases ingest`'s format), if it has one."""
    return TENANTS_DIR / tenant / "resolved_cases.jsonl"


def read_input(path: Path, default_tenant: str = DEMO_TENANT) -> list[DemoTicket]:
    """Tickets from a JSONL file: {"id", "tenant", "channel", "subject", "body", "customer": {"id", "email"}}."""
    tickets: list[DemoTicket] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{where}: each line must be a JSON object")
        ticket_id = str(record.get("id") or "").strip()
        if not ticket_id:
            raise InputError(f"{where}: id is missing")
        if ticket_id in seen:
            raise InputError(f"{where}: id {ticket_id!r} appears twice")
        seen.add(ticket_id)
        channel = str(record.get("channel") or "").strip().lower()
        if channel not in CHANNELS:
            raise InputError(f"{where}: channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
        subject, body = str(record.get("subject") or ""), str(record.get("body") or "")
        if not (subject.strip() or body.strip()):
            raise InputError(f"{where}: a ticket needs a subject or a body")
        customer = record.get("customer") or {}
        if not isinstance(customer, dict):
            raise InputError(f"{where}: customer must be an object with id and email")
        customer_id = str(customer.get("id") or f"cust-{ticket_id}")
        email = str(customer.get("email") or f"{_slug(customer_id)}@customers.example")
        if "@" not in email:
            raise InputError(f"{where}: customer.email {email!r} is not an address")
        tickets.append(DemoTicket(ticket_id, str(record.get("tenant") or default_tenant), channel, subject, body,
                                  customer_id, email, str(record.get("label") or "")))
    if not tickets:
        raise InputError(f"{path}: no tickets")
    return tickets


EVALUATION_SLICES = ("evaluation", "fresh")


def sample_tickets(count: int, *, run_id: str, tenant: str = DEMO_TENANT, seed: int = 7,
                   evaluation: str | None = None) -> list[DemoTicket]:
    """The demo's sample tickets, each given one of the five channels in a seeded order: held-out
    Banking77 messages from the development half with a few hostile ones, or with `evaluation`
    ("evaluation": the evaluation half; "fresh": the fresh slice) only labelled messages from that
    slice (tooling/sample_tickets.py)."""
    from tooling.sample_tickets import demo_tickets, development_rows, evaluation_rows, fresh_rows

    if evaluation not in (None, *EVALUATION_SLICES):
        raise ValueError(f"evaluation must be one of {EVALUATION_SLICES}, not {evaluation!r}")
    rng = random.Random(seed)
    rows = {None: development_rows, "evaluation": evaluation_rows, "fresh": fresh_rows}[evaluation]()
    tickets = []
    for index, payload in enumerate(demo_tickets(count, run_id=run_id, seed=seed, rows=rows,
                                                 hostile=evaluation is None)):
        channel = CHANNELS[(index + rng.randrange(len(CHANNELS))) % len(CHANNELS)]
        customer_id = payload.get("customer_id") or f"cust-{index:04d}"
        tickets.append(DemoTicket(
            id=payload["id"], tenant=tenant, channel=channel, subject=payload.get("subject", ""),
            body=payload.get("body", ""), customer_id=customer_id,
            customer_email=f"{customer_id}@customers.example", label=payload["metadata"]["demo_label"],
        ))
    return tickets


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "customer"


class ChannelSender:
    """Opens each ticket as its customer would: through the provider's own API (which then calls
    the gateway's webhook, signed), by mail to the tenant's support address, or by a signed API
    call to the gateway."""

    def __init__(self, servers, post_api_ticket) -> None:  # noqa: ANN001 - tooling.channel_servers, tooling.demo
        self._servers = servers
        self._post_api_ticket = post_api_ticket

    def send(self, ticket: DemoTicket) -> SentTicket:
        from services.gateway.channels import pipeline_ticket_id

        servers, name = self._servers, ticket.customer_id
        started = time.time()
        subject = ticket.subject or ticket.body[:60] or "(no subject)"
        if ticket.channel == "zendesk":
            external = servers.zendesk_create_ticket(ticket.tenant, subject=subject, body=ticket.body or subject,
                                                     requester_email=ticket.customer_email, requester_name=name)
        elif ticket.channel == "intercom":
            external = servers.intercom_start_conversation(ticket.tenant, body=_paragraphs(ticket.body or subject),
                                                           email=ticket.customer_email, name=name,
                                                           external_id=ticket.customer_id)
        elif ticket.channel == "freshdesk":
            external = servers.freshdesk_create_ticket(ticket.tenant, subject=subject,
                                                       description_html=_paragraphs(ticket.body or subject),
                                                       email=ticket.customer_email, name=name)
        elif ticket.channel == "email":
            external = servers.send_customer_mail(ticket.tenant, from_addr=ticket.customer_email, subject=subject,
                                                  body=ticket.body)
        else:
            external = ticket.id
            self._post_api_ticket({"id": ticket.id, "tenant_id": ticket.tenant, "channel": "api",
                                   "customer_id": ticket.customer_id, "subject": ticket.subject, "body": ticket.body})
        return SentTicket(ticket, pipeline_ticket_id(ticket.channel, ticket.tenant, str(external)), str(external),
                          started)


def _paragraphs(text: str) -> str:
    from html import escape

    return "".join(f"<p>{escape(part)}</p>" for part in text.split("\n\n") if part.strip()) or "<p></p>"


def citations_from_html(html: str) -> list[dict]:
    """The help-center links in what a channel received: [{article_id, title, url}], in order."""
    citations, seen = [], set()
    for link in BeautifulSoup(html or "", "html.parser").find_all("a", href=True):
        match = re.search(r"/articles/(\d+)", link["href"])
        if match and match.group(1) not in seen:
            seen.add(match.group(1))
            citations.append({"article_id": match.group(1), "title": link.get_text(" ", strip=True), "url": link["href"]})
    return citations


def received_by_channel(servers, sent: Iterable[SentTicket]) -> dict[str, list[dict]]:  # noqa: ANN001
    """What each ticket's own channel received from Supportflow, per input ticket id, oldest first:
    [{kind, channel, external_id, text, citations, at}]."""
    sent = list(sent)
    by_external: dict[tuple[str, str], str] = {(s.ticket.channel, s.external_id): s.ticket.id for s in sent}
    found: dict[str, list[dict]] = defaultdict(list)
    for channel in sorted({s.ticket.channel for s in sent}):
        for item in servers.deliveries(channel):
            owner = by_external.get((channel, str(item.get("ticket", ""))))
            if owner is None:
                continue
            found[owner].append({
                "kind": item["kind"], "channel": channel, "external_id": str(item.get("external_id", "")),
                "text": item.get("text", ""), "citations": citations_from_html(item.get("html", "")),
                "at": item.get("at", ""),
            })
    for items in found.values():
        items.sort(key=lambda item: item["at"])
    return dict(found)


def wait_for_deliveries(servers, sent: list[SentTicket], timeout_s: float, progress=None) -> dict[str, list[dict]]:  # noqa: ANN001
    """Poll the channels until every ticket has at least one delivery or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = received_by_channel(servers, sent)
        if len(found) >= len(sent) or time.monotonic() > deadline:
            return found
        if progress:
            progress(f"{len(found)} of {len(sent)} tickets have had an answer on their channel ...")
        time.sleep(2.0)


# ----------------------------------------------------------------------------------------------
# Quality of what reached the customers

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class HelpCenterArticle:
    article_id: str
    title: str
    intents: tuple[str, ...]
    text: str


def load_help_center(folder: Path) -> dict[str, HelpCenterArticle]:
    """The tenant's articles by id, from the Markdown files with YAML front matter."""
    articles = {}
    for path in sorted(folder.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        _, front, body = text.split("---", 2)
        meta = yaml.safe_load(front)
        articles[str(meta["id"])] = HelpCenterArticle(str(meta["id"]), meta["title"], tuple(meta.get("intents") or ()),
                                                      body)
    return articles


_CITATION_MARK = re.compile(r"\[\d+\]")


def reply_numbers(text: str) -> set[str]:
    """The numbers a reply states: not its citation marks ("[1]") nor the lines listing its sources."""
    kept = []
    for line in text.splitlines():
        if line.strip().lower().startswith(("sources", "source:", "- http", "http")) or "/articles/" in line:
            continue
        kept.append(_CITATION_MARK.sub(" ", line))
    return {n.rstrip(".,") for n in _NUMBER.findall("\n".join(kept))}


def evidence_text(record: dict) -> str:
    """What the account system said about the ticket (its investigation's findings, as the
    investigator read them from the records): the other source a reply's numbers may come from."""
    findings = (record.get("investigation") or {}).get("findings", [])
    return " ".join(" ".join([f.get("summary", ""), *map(str, (f.get("facts") or {}).values())]) for f in findings)


def round_trip_quality(records: list[dict], articles: dict[str, HelpCenterArticle]) -> dict:
    """Figures over the labelled tickets (a known true intent): share answered automatically,
    primary citation on the true intent, articles cited per reply, numbers a reply states that
    neither its cited articles nor the ticket's account evidence hold; overall and per archetype (the true intent's)."""
    rows = [r for r in records if r.get("label") and ":" not in r["label"]]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups["all"].append(r)
        groups[r.get("true_archetype") or r.get("archetype", "?")].append(r)
    out = {}
    for name, group in groups.items():
        replies = [r for r in group if r["decision"] == "respond"]
        primary_right, cited_counts, unsupported = 0, [], []
        for r in replies:
            reply = next((d for d in r.get("delivered", []) if d["kind"] == "reply"), None)
            citations = (reply or {}).get("citations", [])
            cited_counts.append(len(citations))
            first = articles.get(citations[0]["article_id"]) if citations else None
            primary_right += bool(first and r["label"] in first.intents)
            cited_text = " ".join(articles[c["article_id"]].text for c in citations if c["article_id"] in articles)
            cited_numbers = {n.rstrip(".,") for n in _NUMBER.findall(cited_text + " " + evidence_text(r))}
            missing = sorted(reply_numbers((reply or {}).get("text", "")) - cited_numbers)
            if missing:
                unsupported.append({"id": r["id"], "numbers": missing})
        out[name] = {
            "tickets": len(group),
            "answered_automatically": len(replies),
            "auto_answer_share": round(len(replies) / len(group), 4) if group else None,
            "primary_citation_on_true_intent": round(primary_right / len(replies), 4) if replies else None,
            "max_articles_cited": max(cited_counts, default=0),
            "replies_with_unsupported_numbers": len(unsupported),
            "unsupported_numbers": unsupported[:20],
        }
    return out


def decisions_by_channel(records: list[dict]) -> dict[str, Counter]:
    table: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        table[r["channel_in"]][r["decision"]] += 1
    return dict(table)


def iter_examples(records: list[dict], kind: str) -> Iterator[tuple[dict, dict]]:
    for r in records:
        for item in r.get("delivered", []):
            if item["kind"] == kind:
                yield r, item
                break
