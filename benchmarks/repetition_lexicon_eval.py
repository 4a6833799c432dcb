"""Precision and recall of the repetition lexicon (customer_repetition_rate): how often a customer
reply it flags really says "I already explained this", on text it was not written from.

    python benchmarks/repetition_lexicon_eval.py [--datasets DIR] [--lexicon FILE] [--json]

Sets (docs/kpi-panel.md says which are in-sample):
- tau2: the customer utterances quoted in tau2-bench's banking and retail tasks (synthetic, MIT) and
  the customer turns of ABCD's sample conversations (real, MIT). The 40 that mention asking,
  telling, explaining, repeating or time were labelled by hand (tests/unit/fixtures/
  repetition-labelled.jsonl: 7 say they already said it); the others are negatives.
- banking77: the 10,003 train messages, first messages of a conversation, so all negatives
  (a first message cannot refer back), many with "already" or "again" in another sense.
- retail: the retail tenant's intent examples and sample tickets (tenants/retail/), all negatives.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from services.learner.tenant_data import default_lexicon, parse_lexicon  # noqa: E402

DEFAULT_DATASETS = ROOT.parent / "shared" / "datasets"
LABELS = ROOT / "tests" / "unit" / "fixtures" / "repetition-labelled.jsonl"
QUOTED = re.compile(r'\\"([^"\\]{15,400})\\"')  # a quoted customer line inside a task's JSON text


def tau2_and_abcd(datasets: Path) -> list[str]:
    texts = []
    for name in ("tau2_banking_knowledge/tasks_dev.json", "tau2_retail/tasks_train.json"):
        texts += QUOTED.findall(json.dumps(json.loads((datasets / name).read_text())))
    for conversation in json.loads((datasets / "abcd" / "abcd_sample.json").read_text()):
        texts += [text for who, text in conversation["original"] if who == "customer"]
    return list(dict.fromkeys(texts))


def score(lexicon, texts: list[str], positives: set[str]) -> dict:
    flagged = {t for t in texts if lexicon.matches(t)}
    tp, fp = len(flagged & positives), len(flagged - positives)
    fn = len(positives & set(texts)) - tp
    return {"texts": len(texts), "positives": tp + fn, "flagged": len(flagged), "true_positives": tp,
            "false_positives": fp, "false_negatives": fn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "false_positive_examples": sorted(flagged - positives)[:5]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--lexicon", type=Path, help="a lexicon file (default: the learner's default lexicon)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lexicon = (parse_lexicon(yaml.safe_load(args.lexicon.read_text()), str(args.lexicon), default_lexicon())
               if args.lexicon else default_lexicon())
    labelled = [json.loads(line) for line in LABELS.read_text().splitlines() if line.strip()]
    positives = {row["text"] for row in labelled if row["repeated"]}
    banking77 = [row["text"] for row in csv.DictReader((args.datasets / "banking77" / "train.csv").open())]
    retail = [row["text"] for row in csv.DictReader((ROOT / "tenants" / "retail" / "intents" / "examples.csv").open())]
    retail += [f"{t.get('subject', '')} {t['body']}" for t in map(json.loads, (ROOT / "tenants" / "retail" /
                                                                             "sample-tickets.jsonl").open())]
    tau2 = tau2_and_abcd(args.datasets)
    results = {"tau2_abcd": score(lexicon, tau2, positives), "banking77": score(lexicon, banking77, set()),
               "retail": score(lexicon, retail, set())}
    results["all"] = score(lexicon, tau2 + banking77 + retail, positives)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, r in results.items():
            print(f"{name:10s} texts {r['texts']:6d}  positives {r['positives']:2d}  flagged {r['flagged']:3d}  "
                  f"precision {r['precision']}  recall {r['recall']}  false positives {r['false_positives']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
