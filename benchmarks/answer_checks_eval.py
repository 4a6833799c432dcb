"""Precision and recall of the offline drafter's answer checks (services/drafter/answer_checks.py)
on labelled cases of all three tenants, outside the data they were written on.

    python benchmarks/answer_checks_eval.py [--seed 7] [--tau2 PATH] [--show 0]
    python benchmarks/answer_checks_eval.py --export DIR     # pairs to label, blind, and their key
    python benchmarks/answer_checks_eval.py --labels FILE    # each check against the labels

Each labelled question is paired with three articles of its tenant:

- right:  the best lexical match (services/drafter/lexical.py) among the articles tagged with the
          question's true intent (Rho-Bank: among its gold documents);
- random: an article of another intent (Rho-Bank: a non-gold document), chosen at random (seeded);
- near:   the best lexical match among the articles of another intent (Rho-Bank: non-gold).

The quoted units of a pair are what the offline drafter would quote from that one article:
`OfflineDrafter.score_units` (the ticket's true intent as the predicted one) and `select_units`
(the default template: 3 units, 900 characters), the article as the only passage (with
--policy-evidence, followed by the tenant's articles marked `is_policy: true`, as the demo's
retrieval adds them), a policy passage when the article or the tenant's knowledge.yaml says so. Where the drafter finds no unit
to quote (it would send a holding reply and no check runs) the article's three units closest to
the question (the same lexical coverage, no minimum) stand in; their number is printed.

A check's objection is read as a detector of "the quotes do not answer this question": a right
pair is a negative, a random or near pair a positive. Per check and tenant it prints the false
alarms (objections on right pairs), the catches (objections on wrong pairs), recall = catches /
wrong pairs, and precision = catches / (catches + false alarms) on the balanced mix of one right
and one wrong pair per question. `paired` counts the questions where the check objects to the
wrong pair and not the right one against the reverse, with a two-sided sign test: a check earns
its keep when the first clearly outnumbers the second. `union` is what the drafter does: the
tenant's checks in order, the first objection holds the draft.

Labelled pairs (`--export`, `--labels`): whether an article is tagged with the question's intent
is only a proxy for whether the quotes answer it (a right article's quotes can miss the asked
figure; a near article can answer). `--export DIR` writes `pairs.jsonl` (question and quotes only:
no pair kind, no check's verdict, for a labeller to judge blind) and `key.jsonl` (each pair's kind
and every check's objection). The pairs: the right and near pairs of a seeded sample of up to
`--sample` questions per data set, and every other right or near pair some check objects to.
`--labels FILE` (JSONL of `{"id", "answers": true|false}`) prints per check and tenant: precision
(objections on pairs whose quotes do not answer / all objections labelled) and recall (objections
among the sampled pairs that do not answer), with the false alarms it would cause.

Data: demo bank, the evaluation half of the held-out Banking77 slice (tooling/sample_tickets.py)
against tenants/demo-bank/help-center; retail, tenants/retail/intents/examples.csv rows with split
heldout against tenants/retail/help-center; Rho-Bank, the tau2 banking dev tasks (the customer's
instructions, flattened, with their required documents as gold) and the policy set
(tests/fixtures/policy_set, its 40 non-adversarial questions with gold articles) against the tau2
knowledge base, internal articles left out (the drafter never quotes them).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supportflow.contracts.v1 import ticket_pb2 as tk  # noqa: E402

from services.drafter.answer_checks import AnswerChecks, QuotedUnit, TenantAnswerChecks  # noqa: E402
from services.drafter.lexical import content_words, idf_weights, weighted_coverage  # noqa: E402
from services.drafter.offline import OfflineDrafter, is_agent_facing, quoted_units, select_units  # noqa: E402
from services.drafter.passage_units import passage_units  # noqa: E402
from services.drafter.policy_ledger import PassageBacking  # noqa: E402
from services.drafter.reply import DraftInput  # noqa: E402
from services.retriever.articles import TenantKnowledgePolicies, load_articles  # noqa: E402
from tooling.sample_tickets import evaluation_rows  # noqa: E402

TENANTS_DIR = ROOT / "tenants"
DEFAULT_TAU2 = ROOT.parent / "shared" / "datasets" / "tau2_banking_knowledge"
POLICY_CASES = ROOT / "tests" / "fixtures" / "policy_set" / "policy_cases.jsonl"
MAX_SENTENCES, MAX_CHARS = 3, 900  # templates.yaml's default channel
KINDS = ("right", "random", "near")


@dataclass(frozen=True)
class Article:
    article_id: str
    title: str
    text: str
    labels: frozenset[str]  # the intents it is tagged with (Rho-Bank: empty, gold is per question)
    is_policy: bool | None = None  # as the article says; the tenant's knowledge.yaml decides when None


@dataclass(frozen=True)
class Question:
    text: str
    gold: frozenset[str]  # article ids that answer it


@dataclass(frozen=True)
class Dataset:
    name: str
    tenant: str
    intent_of: dict[str, str]  # question text -> the intent passed as predicted ("" for Rho-Bank)
    questions: list[Question]
    articles: list[Article]


def help_center(tenant: str) -> list[Article]:
    return [Article(a.article_id, a.title, a.content, frozenset(a.intents), a.is_policy)
            for a in load_articles(TENANTS_DIR / tenant / "help-center")]


def by_intent(name: str, tenant: str, rows: list[tuple[str, str]]) -> Dataset:
    """Questions labelled with an intent; gold = the articles tagged with it (questions of an intent
    no article is tagged with are left out and counted)."""
    articles = help_center(tenant)
    questions, intent_of, uncovered = [], {}, 0
    for text, label in rows:
        gold = frozenset(a.article_id for a in articles if label in a.labels)
        if not gold:
            uncovered += 1
            continue
        questions.append(Question(text, gold))
        intent_of[text] = label
    print(f"{name}: {len(questions)} questions ({uncovered} of intents no article is tagged with left out), "
          f"{len(articles)} articles")
    return Dataset(name, tenant, intent_of, questions, articles)


def demo_bank() -> Dataset:
    return by_intent("demo-bank", "demo-bank", [(r["text"], r["category"]) for r in evaluation_rows()])


def retail() -> Dataset:
    with open(TENANTS_DIR / "retail" / "intents" / "examples.csv", encoding="utf-8") as handle:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(handle) if r["split"] == "heldout"]
    return by_intent("retail", "retail", rows)


def rho_bank_articles(tau2: Path) -> list[Article]:
    path = tau2 / "documents.jsonl"
    if not path.is_file():
        path = ROOT / "tooling" / "sample_data" / "kb_articles.jsonl.gz"
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    articles = [Article(r["id"], r["title"], r["content"], frozenset()) for r in records]
    return [a for a in articles if not is_agent_facing(tk.EvidencePassage(title=a.title))]


def flatten(value: object) -> str:
    if isinstance(value, dict):
        return "\n".join(flatten(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(flatten(v) for v in value)
    return str(value)


def rho_bank(name: str, pairs: list[tuple[str, set[str]]], articles: list[Article]) -> Dataset:
    ids = {a.article_id for a in articles}
    questions, dropped = [], 0
    for text, gold in pairs:
        customer_facing = frozenset(gold) & ids
        if not customer_facing:
            dropped += 1
            continue
        questions.append(Question(text, customer_facing))
    print(f"{name}: {len(questions)} questions ({dropped} whose gold documents are all internal left out), "
          f"{len(articles)} customer-facing articles")
    return Dataset(name, "rho-bank", {}, questions, articles)


def rho_bank_tau2(tau2: Path, articles: list[Article]) -> Dataset:
    tasks = json.loads((tau2 / "tasks_dev.json").read_text(encoding="utf-8"))
    pairs = [(flatten(t["user_scenario"]["instructions"]), set(t["required_documents"])) for t in tasks]
    return rho_bank("rho-bank tau2", pairs, articles)


def rho_bank_policy_set(articles: list[Article]) -> Dataset:
    with open(POLICY_CASES, encoding="utf-8") as handle:
        cases = [json.loads(line) for line in handle if line.strip()]
    pairs = [(f"{c['subject']}\n{c['body']}".strip(), set(c["gold_article_ids"]))
             for c in cases if c["kind"] == "question" and c["gold_article_ids"]]
    return rho_bank("rho-bank policy set", pairs, articles)


class Matcher:
    """Articles ranked by how much of a question's weight (idf over the articles) they cover."""

    def __init__(self, articles: list[Article]) -> None:
        self.words = [set(content_words(f"{a.title}\n{a.text}")) for a in articles]
        self.idf = idf_weights(self.words)
        self.unseen = sum(self.idf.values()) / len(self.idf)

    def best(self, question: str, candidates: list[int]) -> int:
        query = {w: self.idf.get(w, self.unseen) for w in content_words(question)}
        return max(candidates, key=lambda i: (weighted_coverage(query, self.words[i]), -i))


class Quoter:
    """What the offline drafter quotes from one article for a question."""

    def __init__(self, checks: TenantAnswerChecks, *, policy_evidence: bool = False) -> None:
        self.drafter = OfflineDrafter(None, checks=checks)  # type: ignore[arg-type]  # templates unused by score_units
        self.policies = TenantKnowledgePolicies(TENANTS_DIR)
        self.policy_evidence = policy_evidence
        self.fallbacks: Counter[str] = Counter()

    def passage(self, tenant: str, article: Article) -> tk.EvidencePassage:
        return tk.EvidencePassage(article_id=article.article_id, title=article.title, text=article.text, score=1.0,
                                  source="help_center", intents=sorted(article.labels),
                                  is_policy=self.policies(tenant).canonical(article.is_policy))

    def quote(self, tenant: str, question: str, intent: str, article: Article, kind: str,
              policy: tuple[Article, ...] = ()) -> list[QuotedUnit]:
        passage = self.passage(tenant, article)
        extra = tuple(self.passage(tenant, p) for p in policy if p.article_id != article.article_id) \
            if self.policy_evidence else ()
        request = DraftInput(tk.Ticket(tenant_id=tenant, body=question), tk.NormalizedTicket(problem_statement=question),
                             tk.Classification(intent=intent), (passage, *extra))
        scored = self.drafter.score_units(request)
        if scored:
            return quoted_units(select_units(scored, MAX_SENTENCES, MAX_CHARS), request.evidence)
        # The drafter would hold the reply; quote the units closest to the question regardless.
        self.fallbacks[kind] += 1
        backing = PassageBacking(passage)
        units = [u for u in passage_units(passage, 0) if backing.backs(u.text)] or passage_units(passage, 0)
        words = [content_words(f"{u.section} {u.text}") for u in units]
        idf = idf_weights(words) if units else {}
        query = {w: idf.get(w, 1.0) for w in content_words(question)}
        best = sorted(range(len(units)), key=lambda i: -weighted_coverage(query, words[i]))[:MAX_SENTENCES]
        return [QuotedUnit(units[i].text, units[i].section, article.title) for i in sorted(best)]


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test of wins against losses (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def evaluate(data: Dataset, checks: AnswerChecks, quoter: Quoter, rng: random.Random, show: int,
             pairs: list[dict] | None = None) -> dict:
    matcher = Matcher(data.articles)
    # Articles the tenant marks as policy one by one (not a whole KB declared canonical).
    policy = tuple(a for a in data.articles if a.is_policy)
    names = [c.name for c in checks.checks] + ["union"]
    objected = {kind: {name: [] for name in names} for kind in KINDS}
    shown = 0
    for question in data.questions:
        right = [i for i, a in enumerate(data.articles) if a.article_id in question.gold]
        wrong = [i for i, a in enumerate(data.articles) if a.article_id not in question.gold]
        if not right or not wrong:
            continue
        chosen = {"right": matcher.best(question.text, right), "random": rng.choice(wrong),
                  "near": matcher.best(question.text, wrong)}
        intent = data.intent_of.get(question.text, "")
        for kind, index in chosen.items():
            quoted = quoter.quote(data.tenant, question.text, intent, data.articles[index], kind, policy)
            for check in checks.checks:
                reason = check.judge(question.text, quoted)
                objected[kind][check.name].append(reason is not None)
            first = checks.first_objection(question.text, quoted)
            objected[kind]["union"].append(first is not None)
            if pairs is not None and kind != "random":
                pairs.append({"dataset": data.name, "tenant": data.tenant, "question": question.text,
                              "article": data.articles[index].title, "kind": kind,
                              "units": [[u.text, u.section, u.title] for u in quoted],
                              "objected": objected[kind]["union"][-1]})
            if first is not None and kind == "right" and shown < show:
                shown += 1
                print(f"  false alarm [{data.name}] {question.text[:100]!r} <- {data.articles[index].title!r}: {first}")
    return {"names": names, "objected": objected}


def rows_for(data: Dataset, result: dict) -> list[list[str]]:
    objected = result["objected"]
    rows = []
    for name in result["names"]:
        right = objected["right"][name]
        n = len(right)
        alarms = sum(right)
        cells = [data.name, name, f"{alarms}/{n} ({alarms / n:.1%})" if n else "-"]
        for kind in ("random", "near"):
            wrong = objected[kind][name]
            catches = sum(wrong)
            precision = catches / (catches + alarms) if catches + alarms else float("nan")
            wins = sum(w and not r for w, r in zip(wrong, right))
            losses = sum(r and not w for w, r in zip(wrong, right))
            cells += [f"{catches}/{n} ({catches / n:.1%})", "-" if math.isnan(precision) else f"{precision:.2f}",
                      f"{wins}:{losses} p={sign_test(wins, losses):.2g}"]
        rows.append(cells)
    return rows


TABLE_HEADER = ["data", "check", "false alarms (right)", "catches (random)", "prec", "paired",
                "catches (near)", "prec", "paired"]


def print_table(rows: list[list[str]], header: list[str] = TABLE_HEADER) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def export_pairs(pairs: list[dict], out: Path, sample: int, seed: int) -> None:
    """Write the pairs to label, blind, and their key (see the module's docstring)."""
    chosen: list[dict] = []
    for name in dict.fromkeys(p["dataset"] for p in pairs):
        of_data = [p for p in pairs if p["dataset"] == name]
        questions = sorted(dict.fromkeys(p["question"] for p in of_data))
        sampled = set(random.Random(f"{seed}:{name}:sample").sample(questions, min(sample, len(questions))))
        chosen += [p | {"sampled": p["question"] in sampled} for p in of_data
                   if p["question"] in sampled or p["objected"]]
    random.Random(f"{seed}:order").shuffle(chosen)  # no order gives the kind away
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as blind, open(out / "key.jsonl", "w", encoding="utf-8") as key:
        for number, pair in enumerate(chosen, 1):
            pair_id = f"p{number:04d}"
            blind.write(json.dumps({"id": pair_id, "tenant": pair["tenant"], "question": pair["question"],
                                    "article": pair["article"], "quotes": [u[0] for u in pair["units"]]},
                                   ensure_ascii=False) + "\n")
            key.write(json.dumps({"id": pair_id, "dataset": pair["dataset"], "tenant": pair["tenant"],
                                  "kind": pair["kind"], "sampled": pair["sampled"], "units": pair["units"]}, ensure_ascii=False) + "\n")
    print(f"{len(chosen)} pairs to label in {out / 'pairs.jsonl'}; their key in {out / 'key.jsonl'}")


def score_labels(labels_path: Path, key_path: Path) -> None:
    """Each check of today's code against labelled pairs (their questions from pairs.jsonl beside
    the key): precision over every objection on a
    labelled pair, recall over the sampled pairs whose quotes do not answer."""
    with open(labels_path, encoding="utf-8") as handle:
        answers = {r["id"]: bool(r["answers"]) for r in map(json.loads, filter(str.strip, handle))}
    with open(key_path.parent / "pairs.jsonl", encoding="utf-8") as handle:
        questions = {p["id"]: p["question"] for p in map(json.loads, filter(str.strip, handle))}
    with open(key_path, encoding="utf-8") as handle:
        keys = [k | {"question": questions[k["id"]]} for k in map(json.loads, filter(str.strip, handle))
                if k["id"] in answers]
    tenants = TenantAnswerChecks(TENANTS_DIR)
    for k in keys:
        checks = tenants.for_tenant(k["tenant"])
        quoted = [QuotedUnit(*unit) for unit in k["units"]]
        k["objections"] = {c.name: c.judge(k["question"], quoted) is not None for c in checks.checks}
        k["objections"]["union"] = checks.first_objection(k["question"], quoted) is not None
    header = ["data", "check", "objections", "of them not answering (precision)", "false alarms",
              "recall (sampled misses caught)"]
    rows = []
    for name in dict.fromkeys(k["dataset"] for k in keys):
        of_data = [k for k in keys if k["dataset"] == name]
        misses = [k for k in of_data if k["sampled"] and not answers[k["id"]]]
        sampled = sum(k["sampled"] for k in of_data)
        rows.append([name, f"(labelled {len(of_data)}: sampled {sampled}, of which {len(misses)} do not answer)",
                     "", "", "", ""])
        for check in of_data[0]["objections"]:
            objected = [k for k in of_data if k["objections"][check]]
            right = sum(not answers[k["id"]] for k in objected)
            caught = sum(k["objections"][check] for k in misses)
            rows.append([name, check, str(len(objected)),
                         f"{right} ({right / len(objected):.2f})" if objected else "-",
                         str(len(objected) - right),
                         f"{caught}/{len(misses)} ({caught / len(misses):.2f})" if misses else "-"])
    print_table(rows, header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tau2", type=Path, default=DEFAULT_TAU2, help="the tau2 banking_knowledge folder")
    parser.add_argument("--show", type=int, default=0, help="print up to N false alarms per data set")
    parser.add_argument("--policy-evidence", action="store_true",
                        help="give the drafter the tenant's policy articles with each article, as retrieval does")
    parser.add_argument("--export", type=Path, help="write the pairs to label (blind) and their key to this folder")
    parser.add_argument("--sample", type=int, default=50, help="questions per data set sampled for --export")
    parser.add_argument("--labels", type=Path, help="score each check against these labels (key.jsonl beside them)")
    parser.add_argument("--key", type=Path, help="the key written by --export (default: key.jsonl beside --labels)")
    args = parser.parse_args()
    if args.labels:
        score_labels(args.labels, args.key or args.labels.parent / "key.jsonl")
        return

    checks = TenantAnswerChecks(TENANTS_DIR)
    quoter = Quoter(checks, policy_evidence=args.policy_evidence)
    rho_articles = rho_bank_articles(args.tau2)
    datasets = [demo_bank(), retail()]
    if (args.tau2 / "tasks_dev.json").is_file():
        datasets.append(rho_bank_tau2(args.tau2, rho_articles))
    datasets.append(rho_bank_policy_set(rho_articles))
    rows = []
    pairs: list[dict] | None = [] if args.export else None
    for data in datasets:
        rng = random.Random(f"{args.seed}:{data.name}")
        result = evaluate(data, checks.for_tenant(data.tenant), quoter, rng, args.show, pairs)
        rows += rows_for(data, result)
    if pairs is not None:
        export_pairs(pairs, args.export, args.sample, args.seed)
    print()
    print_table(rows)
    print(f"\npairs where the drafter found nothing to quote (the three closest units stood in): {dict(quoter.fallbacks)}")


if __name__ == "__main__":
    main()
