"""How fast the workspace's pages answer with a full queue (issue 24: "the page answers in under
300 ms p95 with 10,000 tickets in the queue").

    python benchmarks/workspace_page_latency.py [--tickets 10000] [--requests 200] [--warmup 20]
        [--concurrency 1] [--grant '*'] [--db-url URL] [--seed 24] [--json OUT]

Builds a workspace database (a SQLite file in a temporary directory unless `--db-url` names
another) and fills it through the store's own write path (`queue_row` + `WorkspaceStore.upsert_ticket`,
one transaction per decision, as the consumer writes) with `--tickets` TicketDecided events that
wait for a person: several tenants, the three queues, Banking77-style intents, every urgency and
channel, customer tiers, a few incidents, each with a conversation, a draft with citations and a
claim ledger, and, for escalations, a context packet. Creates one agent (granted `--grant`: `*`
for every tenant, or tenant ids separated by commas) with a bearer token, then serves the real
application (`create_app`) with uvicorn on a free loopback port through `supportflow.http_server.HttpServer`,
as the service does, and signs in through the real login form (its CSRF token included) with httpx.

Then, after `--warmup` requests each, times `--requests` requests of each of:
  queue          GET /queue                     the page (its 200 newest and most urgent rows, counts, filter options)
  queue_filtered GET /queue?intent=<one>        the page filtered to one intent
  queue_rows     GET /queue/rows                the rows fragment the page polls every few seconds
  api_queue      GET /api/v1/queue              the API's queue (bearer token)
  ticket         GET /tickets/{id}              one ticket's page (ids drawn at random)
sequentially (one agent) by default, or from `--concurrency` threads at once, each with its own
connection. Prints p50/p95/p99/max per endpoint and whether p95 is under 300 ms, the database's
size, how long loading the tickets took, and how long the store's queries take on their own (to
tell the database's share from rendering). Exits 1 when an endpoint's p95 is 300 ms or more.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from supportflow.contracts.v1 import events_pb2 as ev  # noqa: E402
from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from supportflow.http_server import HttpServer  # noqa: E402

from services.workspace.auth import LoginLimiter, User, hash_password, token_digest  # noqa: E402
from services.workspace.handlers import queue_row  # noqa: E402
from services.workspace.store import WorkspaceStore  # noqa: E402
from services.workspace.web import QUEUE_PAGE_ROWS, create_app  # noqa: E402

TARGET_P95_MS = 300.0
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ROW = re.compile(r'<tr class="queue-item ')

TENANTS = ("rho-bank", "north-credit", "lumen-pay", "harbor-savings", "aurora-fintech", "kite-cards",
           "meridian-mutual", "zephyr-wallet")
TENANT_WEIGHTS = (30, 18, 14, 10, 10, 8, 6, 4)  # a few big tenants, a long tail
# Banking77 intents, by archetype.
INTENTS = {
    tk.ARCHETYPE_REPETITIVE: ("card_arrival", "card_delivery_estimate", "activate_my_card", "pin_blocked",
                              "change_pin", "lost_or_stolen_card", "top_up_failed", "pending_transfer"),
    tk.ARCHETYPE_FAQ_BOUNDED: ("exchange_rate", "card_payment_fee_charged", "supported_cards_and_currencies",
                               "country_support", "age_limit", "top_up_limits", "disposable_card_limits"),
    tk.ARCHETYPE_ACCOUNT_SPECIFIC: ("declined_card_payment", "transaction_charged_twice", "refund_not_showing_up",
                                    "wrong_amount_of_cash_received", "verify_my_identity", "cash_withdrawal_charge",
                                    "balance_not_updated_after_bank_transfer", "compromised_card"),
}
URGENCY_WEIGHTS = ((tk.URGENCY_CRITICAL, 3), (tk.URGENCY_HIGH, 15), (tk.URGENCY_NORMAL, 60),
                   (tk.URGENCY_LOW, 17), (tk.URGENCY_UNSPECIFIED, 5))
CHANNEL_WEIGHTS = ((tk.CHANNEL_EMAIL, 40), (tk.CHANNEL_CHAT, 25), (tk.CHANNEL_WEB_FORM, 15), (tk.CHANNEL_API, 8),
                   (tk.CHANNEL_PHONE, 7), (tk.CHANNEL_SOCIAL, 5))
DECISION_WEIGHTS = ((ev.DECISION_REVIEW, 60), (ev.DECISION_ESCALATE, 25), (ev.DECISION_FOLLOW_UP, 15))
TIERS = (tk.CUSTOMER_TIER_STANDARD, tk.CUSTOMER_TIER_PREMIUM, tk.CUSTOMER_TIER_ENTERPRISE)
PROVIDERS = {tk.CHANNEL_EMAIL: "zendesk", tk.CHANNEL_CHAT: "intercom", tk.CHANNEL_WEB_FORM: "freshdesk",
             tk.CHANNEL_API: "api", tk.CHANNEL_PHONE: "zendesk", tk.CHANNEL_SOCIAL: "front"}
SUBJECTS = ("Where is my card?", "Payment declined at the shop", "Charged twice for one purchase",
            "Refund still not here", "Cannot top up", "Which currencies can I hold?", "Transfer pending for days")
BODIES = (
    "Hi, I ordered a new card {d} days ago and it still has not arrived. Can you tell me where it is?",
    "My card was declined at a supermarket this morning although I have {d}0 EUR on the account. What happened?",
    "I see the same payment of {d}4.99 twice on my statement. Please refund one of them.",
    "The merchant says they refunded me {d} days ago but I cannot see it. When will it show up?",
    "Topping up with my other bank card fails every time with an error. I tried {d} times.",
)
ARTICLES = (
    ("kb-card-delivery", "Card delivery times", "Cards arrive within 5 working days of the order"),
    ("kb-declines", "Why a card payment is declined", "A payment is declined when the merchant's bank"),
    ("kb-refunds", "Refunds from merchants", "A refund shows up within 10 working days"),
    ("kb-top-up", "Topping up your account", "Top-ups by card are limited to 3 a day"),
    ("kb-fees", "Fees and limits", "Card payments abroad carry no fee up to 1,000 EUR a month"),
    ("kb-currencies", "Currencies we support", "You can hold 28 currencies"),
)


def _pick(rng: random.Random, weighted: tuple) -> int:
    values, weights = zip(*weighted)
    return rng.choices(values, weights)[0]


def decided_event(index: int, rng: random.Random, run: str, now: float) -> ev.TicketDecided:
    """One realistic decision waiting for a person."""
    tenant = rng.choices(TENANTS, TENANT_WEIGHTS)[0]
    channel = _pick(rng, CHANNEL_WEIGHTS)
    archetype = rng.choice(tuple(INTENTS))
    intent = rng.choice(INTENTS[archetype])
    decision = _pick(rng, DECISION_WEIGHTS)
    received = now - rng.uniform(0, 14 * 86400)  # the last two weeks
    ticket_id = f"{PROVIDERS[channel]}-{run}-{index:06d}"
    digits = rng.randint(2, 9)
    ticket = tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, channel=channel, customer_id=f"cust-{rng.randint(1, 4000)}",
                       subject=rng.choice(SUBJECTS), body=rng.choice(BODIES).format(d=digits), language="en")
    ticket.origin.provider = PROVIDERS[channel]
    ticket.received_at.FromNanoseconds(int(received * 1e9))
    for turn in range(rng.randint(0, 3)):
        said = ticket.history.add(author="customer" if turn % 2 == 0 else "agent",
                                  text="Any news on this? I wrote before." if turn % 2 == 0 else "We are looking into it.")
        said.at.FromNanoseconds(int((received - 3600 * (3 - turn)) * 1e9))
    incident = f"inc-{rng.randint(1, 6)}" if rng.random() < 0.05 else ""
    classification = tk.Classification(
        intent=intent, confidence=round(rng.uniform(0.35, 0.95), 3), archetype=archetype,
        urgency=_pick(rng, URGENCY_WEIGHTS), tier=rng.choice(TIERS), sentiment=round(rng.uniform(-1, 0.5), 2),
        route={ev.DECISION_REVIEW: tk.ROUTE_DRAFT_FOR_REVIEW, ev.DECISION_ESCALATE: tk.ROUTE_ESCALATE,
               ev.DECISION_FOLLOW_UP: tk.ROUTE_ASK_FOLLOW_UP}[decision],
        route_reason=rng.choice(("confidence below the auto-respond threshold", "account-specific intent",
                                 "risk flag: money movement", "missing order number")),
        model_version="intent-2026.11",
    )
    cited = rng.sample(ARTICLES, rng.randint(1, 3))
    draft = tk.Draft(
        text="Hello,\n\n" + " ".join(f"{passage} [{n}]." for n, (_, _, passage) in enumerate(cited, 1))
             + "\n\nIf anything is unclear, reply to this message.\n\nKind regards",
        citations=[tk.Citation(article_id=a, chunk_id=f"{a}#0", title=t, passage=p, url=f"https://help.example/{a}")
                   for a, t, p in cited],
        ledger=[tk.PolicyClaim(claim=p, kind="policy", article_id=a, passage=p, verified=True) for a, _, p in cited],
        next_step="Send the reply", generator="grounded-drafter", grounding=round(rng.uniform(0.6, 1.0), 3),
    )
    event = ev.TicketDecided(
        meta=ev.EventMeta(event_id=uuid.UUID(int=rng.getrandbits(128)).hex, tenant_id=tenant), ticket=ticket,
        decision=decision, reason=classification.route_reason, classification=classification, draft=draft,
        incident_id=incident,
    )
    if decision == ev.DECISION_ESCALATE:
        event.target_queue = rng.choice(("payments-l2", "fraud", "disputes", "cards-ops"))
        event.case_type = rng.choice((ev.CASE_TYPE_PRODUCT_DEFECT, ev.CASE_TYPE_POLICY_EXCEPTION,
                                      ev.CASE_TYPE_CONFIGURATION_MISTAKE))
        packet = event.packet
        packet.completeness = round(rng.uniform(0.5, 1.0), 2)
        packet.intent = intent
        packet.conversation_summary = "The customer asked twice; the payment is still missing."
        packet.steps_tried.extend(["checked the transaction list", "asked the merchant"])
        packet.missing_information.extend(rng.sample(["order number", "merchant name", "date of payment"], 1))
        packet.frustration_signals.extend(["repeated contact"])
        packet.account_state.update({"kyc": "verified", "card": "active"})
        packet.suggested_next_step = "Open a chargeback"
        packet.target_queue = event.target_queue
        packet.incident_id = incident
        for article_id, title, _ in cited:
            packet.articles.add(article_id=article_id, title=title)
    event.timeline.decided_at.FromNanoseconds(int((received + rng.uniform(1, 20)) * 1e9))
    return event


def load_tickets(store: WorkspaceStore, count: int, seed: int, run: str) -> tuple[list, float]:
    """The tickets' queue rows, and the seconds the store's write path took (the events are made
    beforehand, outside the timing)."""
    rng = random.Random(seed)
    now = time.time()
    rows = [queue_row(decided_event(i, rng, run, now)) for i in range(count)]
    started = time.perf_counter()
    for row in rows:
        store.upsert_ticket(row)
    return rows, time.perf_counter() - started


class NullPublisher:
    """The benchmark only reads: nothing is published."""

    def publish(self, topic, key, event, traceparent=None) -> None:  # noqa: ANN001
        raise AssertionError("the benchmark does not act on tickets")

    def flush(self, timeout_s: float = 30.0) -> None:
        pass


def sign_in(base_url: str, username: str, password: str) -> httpx.Cookies:
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=30) as client:
        token = _CSRF.search(client.get("/login").text)
        if token is None:
            raise SystemExit("the login page has no csrf_token")
        answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token.group(1)})
        if answer.status_code != 303 or answer.headers.get("location") != "/queue":
            raise SystemExit(f"signing in failed: {answer.status_code} {answer.text[:200]}")
        return httpx.Cookies(client.cookies)


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest rank."""
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


def time_endpoint(base_url: str, cookies: httpx.Cookies, headers: dict, paths: list[str], warmup: int,
                  concurrency: int, check) -> list[float]:  # noqa: ANN001
    """Milliseconds per request for `paths` (one request each), spread over `concurrency` threads
    each with its own connection, after `warmup` requests per thread."""
    lanes = [paths[i::concurrency] for i in range(concurrency)]
    barrier = threading.Barrier(concurrency)

    def lane(mine: list[str]) -> list[float]:
        with httpx.Client(base_url=base_url, cookies=cookies, headers=headers, follow_redirects=False,
                          timeout=60) as client:
            for i in range(warmup):
                check(client.get(paths[i % len(paths)]))
            barrier.wait()
            took = []
            for path in mine:
                started = time.perf_counter()
                answer = client.get(path)
                took.append((time.perf_counter() - started) * 1000)
                check(answer)
            return took

    with ThreadPoolExecutor(concurrency) as pool:
        return sorted(t for done in pool.map(lane, lanes) for t in done)


def ok_status(answer: httpx.Response) -> None:
    if answer.status_code != 200:
        raise SystemExit(f"{answer.request.url}: {answer.status_code} {answer.text[:200]}")


def store_timings(store: WorkspaceStore, user: User, intent: str, repeat: int = 20) -> dict[str, float]:
    """Median milliseconds of each query the queue page runs, in process (no HTTP, no rendering)."""
    calls = {
        "store.queue": lambda: store.queue(user.grant, {}, limit=QUEUE_PAGE_ROWS),
        "store.queue(intent)": lambda: store.queue(user.grant, {"intent": intent}, limit=QUEUE_PAGE_ROWS),
        "store.counts": lambda: store.counts(user.grant),
        "store.filter_values": lambda: store.filter_values(user.grant),
        "store.known_target_queues": lambda: store.known_target_queues(user.grant),
    }
    found = {}
    for name, call in calls.items():
        call()
        took = []
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            took.append((time.perf_counter() - started) * 1000)
        found[name] = statistics.median(took)
    return found


def database_bytes(url: str) -> int | None:
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    path = Path(url.removeprefix("sqlite:///")).expanduser()
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=10_000, help="open tickets in the queue")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per endpoint (per thread) first")
    parser.add_argument("--concurrency", type=int, default=1, help="agents asking at once (threads)")
    parser.add_argument("--grant", default="*", help="the agent's tenants: '*' or ids separated by commas")
    parser.add_argument("--db-url", help="the database (default: a SQLite file in a temporary directory)")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.concurrency < 1 or args.requests < 1 or args.tickets < 1:
        parser.error("--tickets, --requests and --concurrency must be at least 1")

    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="workspace-bench-") as tmp:
        url = args.db_url or f"sqlite:///{Path(tmp) / 'workspace.sqlite'}"
        store = WorkspaceStore(url)
        try:
            rows, load_s = load_tickets(store, args.tickets, args.seed, run)
            username, password, api_token = f"bench-{run}", secrets.token_urlsafe(12), secrets.token_urlsafe(24)
            tenants = "*" if args.grant.strip() == "*" else [t.strip() for t in args.grant.split(",") if t.strip()]
            user_id = store.create_user(username, hash_password(password), "agent", tenants)
            store.add_token(token_digest(api_token), user_id)
            user = User.from_row(store.user_by_id(user_id))
            counts = store.counts(user.grant)
            size = database_bytes(url)
            mine = [r for r in rows if user.grant is None or r.tenant in user.grant]
            if not mine:
                parser.error("--grant names no tenant of the tickets")
            intents = [r.intent for r in mine]
            intent = max(set(intents), key=intents.count)  # the most common intent: the filter that matches most
            visible = [r.ticket_id for r in mine]
            rng = random.Random(args.seed + 1)

            app = create_app(store, NullPublisher(), session_secret=secrets.token_urlsafe(32), limiter=LoginLimiter())
            server = HttpServer(app, "127.0.0.1", 0, name="workspace-bench").start()
            try:
                base_url = f"http://127.0.0.1:{server.server_address[1]}"
                cookies = sign_in(base_url, username, password)
                bearer = {"authorization": f"Bearer {api_token}"}
                shown: dict[str, int] = {}

                def rows_of(name: str):  # noqa: ANN202
                    def check(answer: httpx.Response) -> None:
                        ok_status(answer)
                        shown[name] = (len(_ROW.findall(answer.text)) if name.startswith("queue") and name != "queue_rows"
                                       else answer.json()["shown"] if name == "queue_rows"
                                       else len(answer.json()["items"]))
                    return check

                n = args.requests
                endpoints = {
                    "queue": ("GET /queue", ["/queue"] * n, {}, rows_of("queue")),
                    "queue_filtered": (f"GET /queue?intent={intent}", [f"/queue?intent={intent}"] * n, {},
                                       rows_of("queue_filtered")),
                    "queue_rows": ("GET /queue/rows", ["/queue/rows"] * n, {}, rows_of("queue_rows")),
                    "api_queue": ("GET /api/v1/queue", ["/api/v1/queue"] * n, bearer, rows_of("api_queue")),
                    "ticket": ("GET /tickets/{id}", [f"/tickets/{rng.choice(visible)}" for _ in range(n)], {}, ok_status),
                }
                results = {}
                for name, (label, paths, headers, check) in endpoints.items():
                    took = time_endpoint(base_url, cookies if not headers else httpx.Cookies(), headers, paths,
                                         args.warmup, args.concurrency, check)
                    results[name] = {
                        "request": label, "requests": len(took), "rows_shown": shown.get(name),
                        "p50_ms": percentile(took, 50), "p95_ms": percentile(took, 95), "p99_ms": percentile(took, 99),
                        "max_ms": took[-1], "mean_ms": statistics.fmean(took),
                        "p95_under_target": percentile(took, 95) < TARGET_P95_MS,
                    }
            finally:
                server.shutdown()
            queries = store_timings(store, user, intent)
        finally:
            store.close()

    backend = url.split(":", 1)[0]
    print(f"workspace page latency: {args.tickets} tickets ({', '.join(f'{q} {c}' for q, c in counts.items())} open "
          f"for the agent), {backend}, grant {args.grant!r}, {args.concurrency} at once, "
          f"{args.requests} timed requests each after {args.warmup} warm-up")
    print(f"loading the tickets through WorkspaceStore.upsert_ticket: {load_s:.1f} s "
          f"({args.tickets / load_s:.0f} tickets/s); database size: "
          + (f"{size / 1e6:.1f} MB" if size is not None else "n/a (not a SQLite file)"))
    print(f"{'endpoint':<34}{'rows':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{f'p95<{TARGET_P95_MS:.0f}':>9}")
    for r in results.values():
        rows = "" if r["rows_shown"] is None else r["rows_shown"]
        print(f"{r['request'][:33]:<34}{rows:>6}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}"
              f"{r['max_ms']:>9.1f}{('yes' if r['p95_under_target'] else 'NO'):>9}")
    print("the store's queries alone (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in queries.items()))
    passed = all(r["p95_under_target"] for r in results.values())
    print(f"target (p95 < {TARGET_P95_MS:.0f} ms on every endpoint): {'met' if passed else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "tickets": args.tickets, "backend": backend, "grant": args.grant, "concurrency": args.concurrency,
            "requests": args.requests, "warmup": args.warmup, "open_counts": counts, "load_seconds": load_s,
            "database_bytes": size, "target_p95_ms": TARGET_P95_MS, "endpoints": results, "store_query_ms": queries,
            "target_met": passed, "cpu_count": os.cpu_count(),
        }, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
