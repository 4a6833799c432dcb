"""Precision and recall of the checks that guard customers at intake: the prompt-injection guard
(services/classifier/input_guard.py) and each risk flag (services/classifier/signals.py), in sample
and out of sample.

    python benchmarks/guard_eval.py [--show] [--json OUT]

Each ticket goes through the classifier's own reading (`read_ticket`: sanitising, the injection scan
over everything the customer wrote; the risk flags over the customer's words without quotes and
signatures), so the figures are those of the pipeline, not of a bare pattern.

- In sample: the sets the checks were written and tuned on. Injection: the 30-ticket set
  (tests/fixtures/injection_set/), the written cases of tests/fixtures/guard_set/in_sample.json and
  the 10,003 Banking77 train messages (a unit test has always required that none is flagged). Risk
  flags: the written cases of in_sample.json.
- Out of sample: tests/fixtures/guard_set/guard_cases.jsonl (other tenants' data, names,
  signatures, logs, code, other languages, attacks in other styles; README.md there), split by a
  hash of the id into `dev` (what changes to the checks may look at) and `test` (reported, never
  tuned on).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402
from tooling.sample_data import banking77_rows  # noqa: E402

from services.classifier.intake import read_ticket  # noqa: E402
from services.classifier.signals import read_signals  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
RISK_FLAGS = ("security", "billing_dispute", "legal", "churn")


@dataclass(frozen=True)
class Case:
    case_id: str
    subject: str
    body: str
    attack: bool | None  # None: not labelled for injection
    risk: frozenset[str] | None  # None: not labelled for risk flags


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    false_alarms: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def add(self, truth: bool, found: bool, case_id: str) -> None:
        if truth and found:
            self.tp += 1
        elif found:
            self.fp += 1
            self.false_alarms.append(case_id)
        elif truth:
            self.fn += 1
            self.misses.append(case_id)
        else:
            self.tn += 1

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def in_sample_cases() -> list[Case]:
    written = json.loads((FIXTURES / "guard_set" / "in_sample.json").read_text(encoding="utf-8"))
    cases = []
    for line in (FIXTURES / "injection_set" / "injection_cases.jsonl").read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            cases.append(Case(record["id"], record.get("subject", ""), record["body"], True, None))
    cases += [Case(f"written-injection-{i}", "", c["text"], True, None) for i, c in enumerate(written["injections"])]
    cases += [Case(f"written-benign-{i}", "", text, False, None) for i, text in enumerate(written["benign"])]
    cases += [Case(f"written-risk-{i}", "", c["text"], None, frozenset(c["risk"])) for i, c in enumerate(written["risk"])]
    cases += [Case(f"banking77-train-{i}", "", row["text"], False, None) for i, row in enumerate(banking77_rows())]
    return cases


def out_of_sample_cases(split: str) -> list[Case]:
    lines = (FIXTURES / "guard_set" / "guard_cases.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [Case(r["id"], "", r["text"], r["attack"], frozenset(r["risk"])) for r in records if r["split"] == split]


def score(cases: list[Case]) -> dict[str, Confusion]:
    results = {"prompt_injection": Confusion(), **{flag: Confusion() for flag in RISK_FLAGS}}
    for case in cases:
        reading = read_ticket(tk.Ticket(ticket_id=case.case_id, subject=case.subject, body=case.body))
        if case.attack is not None:
            results["prompt_injection"].add(case.attack, bool(reading.injection_styles), case.case_id)
        if case.risk is not None:
            found = {tk.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower()
                     for f in read_signals(reading.signal_text).risk_flags}
            for flag in RISK_FLAGS:
                results[flag].add(flag in case.risk, flag in found, case.case_id)
    return results


def _figure(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show", action="store_true", help="list the ids of false alarms and misses (in sample and dev)")
    parser.add_argument("--show-test", action="store_true", help="list them for the test half too (for the final report only)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    sets = {
        "in-sample": in_sample_cases(),
        "out-of-sample dev": out_of_sample_cases("dev"),
        "out-of-sample test": out_of_sample_cases("test"),
    }
    report: dict[str, dict[str, dict]] = {}
    print(f"{'check':<17} {'set':<19} {'n':>6} {'TP':>4} {'FP':>4} {'FN':>4} {'TN':>6}  precision  recall")
    for name, cases in sets.items():
        for check, confusion in score(cases).items():
            n = confusion.tp + confusion.fp + confusion.fn + confusion.tn
            if not n:
                continue
            print(f"{check:<17} {name:<19} {n:>6} {confusion.tp:>4} {confusion.fp:>4} {confusion.fn:>4} {confusion.tn:>6}"
                  f"  {_figure(confusion.precision):>9}  {_figure(confusion.recall):>6}")
            listed = args.show_test or (args.show and not name.endswith("test"))
            if listed and (confusion.false_alarms or confusion.misses):
                print(f"    false alarms: {', '.join(confusion.false_alarms) or '-'}")
                print(f"    misses:       {', '.join(confusion.misses) or '-'}")
            report.setdefault(check, {})[name] = asdict(confusion) | {
                "precision": confusion.precision, "recall": confusion.recall}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
