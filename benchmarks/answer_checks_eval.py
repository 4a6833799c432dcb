"""Precision and recall of the offline drafter's answer checks (services/drafter/answer_checks.py)
on labelled cases of all three tenants, outside the data they were written on.

    python benchmarks/answer_checks_eval.py [--seed 7] [--tau2 PATH] [--show 0]

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
        path = ROOT / "supportflow" / "sample_data" / "kb_articles.jsonl.gz"
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


def evaluate(data: Dataset, checks: AnswerChecks, quoter: Quoter, rng: random.Random, show: int) -> dict:
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


def print_table(rows: list[list[str]]) -> None:
    header = ["data", "check", "false alarms (right)", "catches (random)", "prec", "paired",
              "catches (near)", "prec", "paired"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tau2", type=Path, default=DEFAULT_TAU2, help="the tau2 banking_knowledge folder")
    parser.add_argument("--show", type=int, default=0, help="print up to N false alarms per data set")
    parser.add_argument("--policy-evidence", action="store_true",
                        help="give the drafter the tenant's policy articles with each article, as retrieval does")
    args = parser.parse_args()

    checks = TenantAnswerChecks(TENANTS_DIR)
    quoter = Quoter(checks, policy_evidence=args.policy_evidence)
    rho_articles = rho_bank_articles(args.tau2)
    datasets = [demo_bank(), retail()]
    if (args.tau2 / "tasks_dev.json").is_file():
        datasets.append(rho_bank_tau2(args.tau2, rho_articles))
    datasets.append(rho_bank_policy_set(rho_articles))
    rows = []
    for data in datasets:
        rng = random.Random(f"{args.seed}:{data.name}")
        result = evaluate(data, checks.for_tenant(data.tenant), quoter, rng, args.show)
        rows += rows_for(data, result)
    print()
    print_table(rows)
    print(f"\npairs where the drafter found nothing to quote (the three closest units stood in): {dict(quoter.fallbacks)}")


if __name__ == "__main__":
    main()
