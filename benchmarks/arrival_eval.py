"""How often the offline drafter's waiting check reads a question rightly, on Banking77 train only.

    python benchmarks/arrival_eval.py [--csv PATH] [--show 10]

Nine Banking77 intents are about something the customer is waiting for (a card, a transfer, a
top-up, a refund, a pending payment). For their messages this prints the share `awaits_arrival`
reads as waiting; for the messages of every other intent, the share it reads as waiting anyway,
with examples. A question read as waiting holds a draft only when no passage it quotes says a word
about delivery, timing or status, so a false alarm costs an agent's look, never a wrong reply; a
miss leaves the draft to the other checks.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.classifier.intent_model import read_labeled_csv  # noqa: E402
from services.drafter.arrival import awaits_arrival  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"

WAITING_INTENTS = frozenset({
    "card_arrival", "pending_card_payment", "pending_cash_withdrawal", "pending_top_up", "pending_transfer",
    "transfer_not_received_by_recipient", "balance_not_updated_after_bank_transfer",
    "balance_not_updated_after_cheque_or_cash_deposit", "Refund_not_showing_up",
})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--show", type=int, default=10, help="other-intent messages read as waiting to print")
    args = parser.parse_args(argv)
    texts, labels = read_labeled_csv(args.csv, "text", "category")
    read = [(text, label, awaits_arrival(text)) for text, label in zip(texts, labels)]
    waiting = [hit for _, label, hit in read if label in WAITING_INTENTS]
    others = [(text, label) for text, label, hit in read if label not in WAITING_INTENTS and hit]
    other_total = len(read) - len(waiting)
    print(f"waiting intents ({len(WAITING_INTENTS)}): {len(waiting)} messages, "
          f"read as waiting {sum(waiting)} ({sum(waiting) / len(waiting):.1%})")
    print(f"other intents: {other_total} messages, read as waiting {len(others)} ({len(others) / other_total:.1%})")
    for label, count in Counter(label for _, label in others).most_common(5):
        print(f"    {label}: {count}")
    for text, label in others[: args.show]:
        print(f"    [{label}] {text[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
