"""The round trip's quality on tickets nothing was trained or tuned on.

    python benchmarks/round_trip_eval.py [--slice evaluation|fresh] [--tickets N] [--rate 10] [--json OUT]

Sends labelled held-out Banking77 messages from the evaluation half of the demo's held-out slice
(`evaluation_rows` in tooling/sample_tickets.py: the intent model never saw them, and the help
center, checks and thresholds were not tuned by looking at them; its per-ticket results were read
on 6-7 December, see docs/measurements.md), or from the fresh slice (`fresh_rows`: kept out of the
model too, carved after that, and never looked at) through the five channels of the
demo tenant, as `bin/supportflow demo` does, and reads back what each channel received. Prints,
overall and per archetype of the ticket's true intent: the share answered automatically, the share
of replies whose first citation is an article for the true intent, the most articles one reply
cited, and the replies stating a number their cited articles do not hold; and tickets with no
delivery on their own channel.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tooling.devinfra.stack import LocalStack  # noqa: E402
from supportflow.eventbus import delete_namespace_topics  # noqa: E402
from tooling.settings import FleetSettings  # noqa: E402
from tooling.demo import round_trip_summary, run_round_trip  # noqa: E402
from tooling.round_trip import (  # noqa: E402
    DEMO_TENANT, EVALUATION_SLICES, help_center_dir, load_help_center, sample_tickets)
from tooling.sample_tickets import evaluation_rows, fresh_rows  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slice", choices=EVALUATION_SLICES, default="evaluation",
                        help="the evaluation half (257 messages) or the fresh slice")
    parser.add_argument("--tickets", type=int, help="tickets (default: every message of the slice)")
    parser.add_argument("--rate", type=float, default=10.0, help="tickets per second")
    parser.add_argument("--json", help="write the figures and every ticket's record here")
    args = parser.parse_args()

    run_id = f"eval{uuid.uuid4().hex[:6]}"
    settings = FleetSettings.from_env().replace(topic_prefix=f"{run_id}.", default_tenant=DEMO_TENANT,
                                           gateway_webhook_secret=uuid.uuid4().hex)
    count = args.tickets or len(evaluation_rows() if args.slice == "evaluation" else fresh_rows())
    tickets = sample_tickets(count, run_id=run_id, evaluation=args.slice)
    stack = LocalStack(settings)
    stack.install()
    stack.up()
    try:
        trip = run_round_trip(settings, tickets, rate=args.rate, run_dir=settings.cache_dir / "bench-runs" / run_id)
        trip.stop()
        delete_namespace_topics(settings)
    finally:
        if stack.started_by_us:
            stack.down(stack.started_by_us)
    summary = round_trip_summary(trip.records, load_help_center(help_center_dir(DEMO_TENANT)))
    print(f"{len(trip.sent)} tickets: {len(trip.missing)} without a decision, {len(trip.duplicated)} with two, "
          f"{len(trip.undelivered)} with nothing delivered on their channel")
    print(f"{'archetype':<18}{'tickets':>8}{'answered':>10}{'share':>8}{'1st cite on intent':>20}"
          f"{'max cited':>11}{'unsupported numbers':>21}")
    for name, q in sorted(summary["quality"].items(), key=lambda kv: kv[0] != "all"):
        share = f"{q['auto_answer_share']:.1%}" if q["auto_answer_share"] is not None else "-"
        right = f"{q['primary_citation_on_true_intent']:.1%}" if q["primary_citation_on_true_intent"] is not None else "-"
        print(f"{name:<18}{q['tickets']:>8}{q['answered_automatically']:>10}{share:>8}{right:>20}"
              f"{q['max_articles_cited']:>11}{q['replies_with_unsupported_numbers']:>21}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "undelivered": trip.undelivered,
                                               "tickets": trip.records}, indent=2, default=str))
    return 0 if not (trip.missing or trip.undelivered) else 1


if __name__ == "__main__":
    raise SystemExit(main())
