"""How drafts read, from a round trip's per-ticket records: numbered lists quoted in part, and the
same account record stated twice.

    python benchmarks/reply_shape.py RUN.json [RUN.json ...] [--tenant demo-bank]

RUN.json is what `bin/supportflow demo --json` or `python benchmarks/round_trip_eval.py --json`
writes. For each run it prints:

- drafts that quote a numbered list of steps from a cited help-center article, how many of them
  quote only part of it, and how many of those are not its first steps in order (a step skipped);
- drafts that state account findings ("Here is what I can see on your account"), and how many state
  the same amount in two of their lines (one record told twice).

The lists are read from the tenant's help-center Markdown on its own (a line starting "1." and the
ones after it), not with the drafter's code, so the count does not share the drafter's view of a
list. A step counts as quoted when the first 40 characters of its words appear in the draft.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tooling.round_trip import DEMO_TENANT, help_center_dir, load_help_center  # noqa: E402

EVIDENCE_LEAD = "Here is what I can see on your account:"
_STEP = re.compile(r"^\s*\d{1,2}[.)]\s+(.*)$")
_AMOUNT = re.compile(r"\d+\.\d\d")


def numbered_lists(body: str) -> list[list[str]]:
    lists: list[list[str]] = []
    current: list[str] = []
    for line in body.splitlines():
        step = _STEP.match(line)
        if step:
            current.append(step.group(1).strip())
        elif current:
            lists.append(current)
            current = []
    if current:
        lists.append(current)
    return lists


def _words(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def shape(records: list[dict], lists_by_article: dict[str, list[list[str]]]) -> dict[str, int]:
    counts = {"quoting_a_list": 0, "partial": 0, "partial_not_first_steps": 0,
              "stating_findings": 0, "same_amount_twice": 0}
    for record in records:
        draft = record.get("draft") or ""
        text = _words(draft)
        for citation in record.get("citations", []):
            for steps in lists_by_article.get(str(citation.get("article_id")), []):
                quoted = [step for step in steps if _words(step)[:40] in text]
                if not quoted:
                    continue
                counts["quoting_a_list"] += 1
                if len(quoted) < len(steps):
                    counts["partial"] += 1
                    counts["partial_not_first_steps"] += quoted != steps[:len(quoted)]
        if EVIDENCE_LEAD in draft:
            counts["stating_findings"] += 1
            block = draft.split(EVIDENCE_LEAD, 1)[1].strip().split("\n\n")[0]
            amounts = [set(_AMOUNT.findall(line)) for line in block.splitlines() if line.startswith("- ")]
            counts["same_amount_twice"] += any(a & b for i, a in enumerate(amounts) for b in amounts[i + 1:])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="a round trip's --json output")
    parser.add_argument("--tenant", default=DEMO_TENANT, help="whose help center the citations point into")
    args = parser.parse_args()
    articles = load_help_center(help_center_dir(args.tenant))
    lists_by_article = {article_id: numbered_lists(article.text) for article_id, article in articles.items()}
    for run in args.runs:
        counts = shape(json.loads(Path(run).read_text())["tickets"], lists_by_article)
        print(f"{run}: drafts quoting a numbered list {counts['quoting_a_list']}, part of it "
              f"{counts['partial']} ({counts['partial_not_first_steps']} not its first steps); drafts stating "
              f"findings {counts['stating_findings']}, the same amount twice {counts['same_amount_twice']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
