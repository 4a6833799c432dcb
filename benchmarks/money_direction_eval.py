"""How often the offline drafter's money-direction check reads a question's direction wrong, on
Banking77 train only.

    python benchmarks/money_direction_eval.py [--csv PATH] [--show 10]

Banking77's intents say which way money moves for many of its messages: a top-up or a deposit
comes in, a cash withdrawal or a transfer the recipient has not received goes out. For the
messages of those intents this prints how many `money_direction` reads as incoming, outgoing or
neither, and the precision of each direction it names. Intents whose messages go both ways
(`beneficiary_not_allowed`: "a transfer to my account was denied" next to "I can't add this
payee"; `pending_transfer`) are left out, as is every intent about no money movement.

A wrong direction can only hold a draft for an agent (and report a KB gap), never send one.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.classifier.intent_model import read_labeled_csv  # noqa: E402
from services.drafter.money_direction import Direction, money_direction  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "datasets" / "banking77" / "train.csv"

INCOMING_INTENTS = frozenset({
    "automatic_top_up", "balance_not_updated_after_bank_transfer", "balance_not_updated_after_cheque_or_cash_deposit",
    "pending_top_up", "receiving_money", "top_up_by_bank_transfer_charge", "top_up_by_card_charge",
    "top_up_by_cash_or_cheque", "top_up_failed", "top_up_limits", "top_up_reverted", "topping_up_by_card",
    "transfer_into_account", "verify_top_up",
})
OUTGOING_INTENTS = frozenset({
    "atm_support", "cancel_transfer", "cash_withdrawal_charge", "cash_withdrawal_not_recognised", "declined_cash_withdrawal",
    "declined_transfer", "failed_transfer", "pending_cash_withdrawal", "transfer_fee_charged",
    "transfer_not_received_by_recipient", "wrong_amount_of_cash_received",
})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--show", type=int, default=10, help="wrongly read messages to print per group")
    args = parser.parse_args(argv)
    texts, labels = read_labeled_csv(args.csv, "text", "category")

    read_as: dict[Direction, Counter] = {Direction.INCOMING: Counter(), Direction.OUTGOING: Counter()}
    for expected, intents in ((Direction.INCOMING, INCOMING_INTENTS), (Direction.OUTGOING, OUTGOING_INTENTS)):
        found = [(text, money_direction(text)) for text, label in zip(texts, labels) if label in intents]
        counts = Counter(direction for _, direction in found)
        for direction in Direction:
            read_as[direction][expected] += counts[direction]
        print(f"{expected.value} intents ({len(intents)}): {len(found)} messages, read as "
              f"incoming {counts[Direction.INCOMING]}, outgoing {counts[Direction.OUTGOING]}, neither {counts[None]}")
        wrong = [text for text, direction in found if direction not in (None, expected)]
        for text in wrong[: args.show]:
            print(f"    read the other way: {text[:120]}")
    for direction, truth in read_as.items():
        named = sum(truth.values())
        precision = truth[direction] / named if named else float("nan")
        print(f"read as {direction.value}: {named} messages, {precision:.1%} of them rightly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
