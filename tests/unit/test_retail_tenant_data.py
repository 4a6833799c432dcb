"""The retail tenant folder (tenants/retail/) is consistent tenant data that the pipeline's own
loaders accept.

The help-center rules are the demo bank's (tests/unit/test_demo_bank_help_center.py), applied with
its check functions to this folder and this taxonomy; amounts are in $ here. Each check of the
other files is a function returning a list of problems, so the same checks run on the real folder
and, to prove they can fail, on broken copies in tmp_path.

Rules checked beyond the help center:
- tenant.yaml names the tenant `retail` and every file it lists exists;
- intents/taxonomy.yaml gives every intent a one-line description, a known archetype and valid
  identifier groups, and agrees with intents/archetypes.yaml and intents/required_identifiers.yaml,
  which the classifier's catalog loader reads;
- intents/examples.csv: labels are taxonomy intents, every intent has at least MIN_EXAMPLES rows,
  `split` is train or heldout with both for every intent that has 2 or more rows, no text appears
  twice, `source` is one of the documented sources;
- routing_policy.yaml parses with the classifier's loader and escalates only taxonomy intents;
- kpi-baseline.yaml and repetition-lexicon.yaml parse with the learner's loaders;
- sample-tickets.jsonl parses with the demo's --input reader, every ticket is a held-out example
  with its label, all five channels appear.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

from tests.unit.test_demo_bank_help_center import (
    check_bodies,
    check_figures,
    check_front_matter,
    check_intents,
    check_policy,
    load_folder,
)

ROOT = Path(__file__).resolve().parents[2]
TENANT = ROOT / "tenants" / "retail"
HELP_CENTER = TENANT / "help-center"
TAXONOMY = TENANT / "intents" / "taxonomy.yaml"
EXAMPLES = TENANT / "intents" / "examples.csv"
SAMPLE_TICKETS = TENANT / "sample-tickets.jsonl"
DEMO_BANK_HELP_CENTER = ROOT / "tenants" / "demo-bank" / "help-center"

ARCHETYPES = ("repetitive", "faq_bounded", "account_specific")
TAXONOMY_KEYS = {"description", "archetype", "required_identifiers", "flow", "abcd_subflows"}
EXAMPLE_COLUMNS = ["text", "label", "split", "source", "source_ref"]
EXAMPLE_SOURCES = {"abcd_sample", "tau2_train", "abcd_guidelines"}
SPLITS = {"train", "heldout"}
MIN_EXAMPLES = 8
CHANNELS = {"zendesk", "intercom", "freshdesk", "email", "api"}
TICKETS_MIN, TICKETS_MAX = 60, 120


def _report(problems: list[str]) -> str:
    return "\n".join(["", *problems])


def _taxonomy(path: Path = TAXONOMY) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _examples(path: Path = EXAMPLES) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


# --- checks -------------------------------------------------------------------------------------


def check_tenant_file(folder: Path) -> list[str]:
    problems = []
    doc = yaml.safe_load((folder / "tenant.yaml").read_text(encoding="utf-8"))
    if doc.get("id") != folder.name:
        problems.append(f"tenant.yaml: id {doc.get('id')!r} is not the folder name {folder.name!r}")
    for key in ("display_name", "locale", "files"):
        if not doc.get(key):
            problems.append(f"tenant.yaml: {key} is missing")
    for name, relative in (doc.get("files") or {}).items():
        if not (folder / relative).exists():
            problems.append(f"tenant.yaml: files.{name} = {relative!r} does not exist")
    return problems


def check_taxonomy(folder: Path) -> list[str]:
    from services.classifier.intake import IDENTIFIER_KINDS
    from services.classifier.intent_catalog import ARCHETYPES as CATALOG_ARCHETYPES
    from services.classifier.intent_catalog import CatalogError, load_intent_catalog

    problems = []
    doc = _taxonomy(folder / "intents" / "taxonomy.yaml")
    intents = doc.get("intents")
    if not isinstance(intents, dict) or not intents:
        return ["taxonomy.yaml: `intents` must map intent names to entries"]
    if doc.get("default") not in ARCHETYPES:
        problems.append(f"taxonomy.yaml: default {doc.get('default')!r} is not an archetype")
    for name, entry in intents.items():
        if not re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*", name):
            problems.append(f"taxonomy.yaml: intent {name!r} is not snake_case")
        if not isinstance(entry, dict) or not TAXONOMY_KEYS <= set(entry):
            problems.append(f"taxonomy.yaml: {name}: needs keys {sorted(TAXONOMY_KEYS)}")
            continue
        description = entry["description"]
        if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
            problems.append(f"taxonomy.yaml: {name}: description must be one line")
        if entry["archetype"] not in ARCHETYPES:
            problems.append(f"taxonomy.yaml: {name}: unknown archetype {entry['archetype']!r}")
        groups = entry["required_identifiers"]
        if not isinstance(groups, list) or not all(isinstance(g, list) and g for g in groups):
            problems.append(f"taxonomy.yaml: {name}: required_identifiers must be a list of non-empty lists")
        else:
            for kind in {k for g in groups for k in g} - set(IDENTIFIER_KINDS):
                problems.append(f"taxonomy.yaml: {name}: unknown identifier kind {kind!r}")
    assert set(ARCHETYPES) == set(CATALOG_ARCHETYPES)
    try:
        catalog = load_intent_catalog(folder / "intents" / "archetypes.yaml",
                                      folder / "intents" / "required_identifiers.yaml")
    except CatalogError as exc:
        return problems + [f"the classifier's catalog loader refuses the intent files: {exc}"]
    if set(catalog.archetypes) != set(intents):
        problems.append(f"archetypes.yaml and taxonomy.yaml name different intents: "
                        f"{sorted(set(catalog.archetypes) ^ set(intents))}")
    for name, entry in intents.items():
        if name in catalog.archetypes and catalog.archetypes[name] != CATALOG_ARCHETYPES.get(entry.get("archetype")):
            problems.append(f"archetypes.yaml: {name}: archetype differs from taxonomy.yaml")
        wanted = tuple(tuple(g) for g in entry.get("required_identifiers") or [])
        if catalog.required_identifiers.get(name, ()) != wanted:
            problems.append(f"required_identifiers.yaml: {name}: differs from taxonomy.yaml ({wanted})")
    for name in set(catalog.required_identifiers) - set(intents):
        problems.append(f"required_identifiers.yaml: {name} is not in taxonomy.yaml")
    return problems


def check_examples(folder: Path) -> list[str]:
    problems = []
    intents = set(_taxonomy(folder / "intents" / "taxonomy.yaml")["intents"])
    columns, rows = _examples(folder / "intents" / "examples.csv")
    if columns != EXAMPLE_COLUMNS:
        return [f"examples.csv: columns must be {EXAMPLE_COLUMNS}, got {columns}"]
    splits: dict[str, Counter] = defaultdict(Counter)
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, 2):
        where = f"examples.csv:{number}"
        if row["label"] not in intents:
            problems.append(f"{where}: label {row['label']!r} is not in taxonomy.yaml")
        if row["split"] not in SPLITS:
            problems.append(f"{where}: split {row['split']!r} is not one of {sorted(SPLITS)}")
        if row["source"] not in EXAMPLE_SOURCES:
            problems.append(f"{where}: source {row['source']!r} is not one of {sorted(EXAMPLE_SOURCES)}")
        text = " ".join(row["text"].lower().split())
        if not text:
            problems.append(f"{where}: empty text")
        elif text in seen:
            problems.append(f"{where}: same text as line {seen[text]}")
        else:
            seen[text] = number
        splits[row["label"]][row["split"]] += 1
    for intent in sorted(intents):
        count = sum(splits[intent].values())
        if count < MIN_EXAMPLES:
            problems.append(f"examples.csv: intent {intent!r} has {count} examples, fewer than {MIN_EXAMPLES}")
        if count >= 2 and set(splits[intent]) != SPLITS:
            problems.append(f"examples.csv: intent {intent!r} has no {sorted(SPLITS - set(splits[intent]))} rows")
    return problems


def check_sample_tickets(folder: Path) -> list[str]:
    from tooling.round_trip import InputError, read_input

    try:
        tickets = read_input(folder / "sample-tickets.jsonl", default_tenant="")
    except InputError as exc:
        return [f"the demo's --input reader refuses sample-tickets.jsonl: {exc}"]
    problems = []
    intents = set(_taxonomy(folder / "intents" / "taxonomy.yaml")["intents"])
    heldout = {(row["text"], row["label"]) for row in _examples(folder / "intents" / "examples.csv")[1]
               if row["split"] == "heldout"}
    if not TICKETS_MIN <= len(tickets) <= TICKETS_MAX:
        problems.append(f"sample-tickets.jsonl: {len(tickets)} tickets, expected {TICKETS_MIN} to {TICKETS_MAX}")
    for ticket in tickets:
        if ticket.tenant != folder.name:
            problems.append(f"{ticket.id}: tenant {ticket.tenant!r} is not {folder.name!r}")
        if ticket.label not in intents:
            problems.append(f"{ticket.id}: label {ticket.label!r} is not in taxonomy.yaml")
        if (ticket.body, ticket.label) not in heldout:
            problems.append(f"{ticket.id}: body and label are not a held-out row of examples.csv")
    missing = CHANNELS - {ticket.channel for ticket in tickets}
    if missing:
        problems.append(f"sample-tickets.jsonl: no ticket on {sorted(missing)}")
    return problems


def check_currency(folder: Path) -> list[str]:
    return [f"{art.name}: uses {symbol!r}; this help center states amounts in $ only"
            for art in load_folder(folder)[0] for symbol in "£€" if symbol in art.body]


def help_center_problems(folder: Path, taxonomy: Path) -> list[str]:
    return (check_front_matter(folder) + check_intents(folder, taxonomy) + check_policy(folder)
            + check_figures(folder) + check_currency(folder) + check_bodies(folder))


# --- the real folder ------------------------------------------------------------------------------


def test_tenant_file_lists_existing_files():
    assert not (problems := check_tenant_file(TENANT)), _report(problems)


def test_taxonomy_is_complete_and_agrees_with_the_classifier_files():
    assert not (problems := check_taxonomy(TENANT)), _report(problems)


def test_help_center_follows_the_demo_bank_rules_with_this_taxonomy():
    """Front matter, every taxonomy intent covered by an article, one policy article, every figure
    of a focused article stated in the policy article in the same form, $ only, body shape."""
    assert not (problems := help_center_problems(HELP_CENTER, TAXONOMY)), _report(problems)


def test_article_ids_differ_from_the_demo_banks():
    retail = {a.meta["id"] for a in load_folder(HELP_CENTER)[0]}
    bank = {a.meta["id"] for a in load_folder(DEMO_BANK_HELP_CENTER)[0]}
    assert not retail & bank, sorted(retail & bank)


def test_the_retriever_loads_the_folder_with_the_same_metadata():
    from services.retriever.articles import load_articles

    articles, _ = load_folder(HELP_CENTER)
    loaded = {a.article_id: a for a in load_articles(HELP_CENTER)}
    assert set(loaded) == {str(a.meta["id"]) for a in articles}
    for art in articles:
        got = loaded[str(art.meta["id"])]
        assert got.is_policy is art.is_policy and got.intents == tuple(art.meta["intents"]), art.name


def test_the_zendesk_stand_in_serves_every_article():
    """The demo syncs a tenant's help center from the Zendesk stand-in, which reads this folder."""
    from tooling.channel_servers.help_center import read_articles

    served = read_articles(str(HELP_CENTER), 1)
    assert set(served) == {a.meta["id"] for a in load_folder(HELP_CENTER)[0]}


def test_the_policy_ledger_finds_every_focused_quantity_in_the_policy_article():
    """The drafter's claim ledger reads the same quantities (value and unit) in the policy article
    as in every focused article that repeats one."""
    from services.drafter.policy_ledger import quantities

    articles, _ = load_folder(HELP_CENTER)
    canonical = {(q.unit, q.value) for a in articles if a.is_policy for q in quantities(a.body, strict=False)}
    missing = [f"{a.name}: {q.text!r}" for a in articles if not a.is_policy for q in quantities(a.body)
               if (q.unit, q.value) not in canonical]
    assert not missing, _report(missing)


def test_the_policy_article_backs_every_focused_figure_sentence_under_the_ledger_rules():
    """If a reply stated a focused article's figure sentence and cited the policy article, some
    passage of the policy article would verify it under the drafter's ledger rules."""
    from services.drafter.passage_units import passage_units
    from services.drafter.policy_ledger import PassageBacking, quantities
    from services.retriever.articles import chunk_article, load_articles
    from supportflow.contracts.v1 import ticket_pb2 as tk

    def passages(article):
        return [tk.EvidencePassage(article_id=article.article_id, chunk_id=chunk.chunk_id, title=article.title,
                                   section=chunk.section, text=chunk.text, is_policy=article.is_policy)
                for chunk in chunk_article(article)]

    articles = load_articles(HELP_CENTER)
    backers = [PassageBacking(p) for a in articles if a.is_policy for p in passages(a)]
    unbacked = [f"{article.title}: {unit.text!r}" for article in articles if not article.is_policy
                for passage in passages(article) for unit in passage_units(passage, 0)
                if quantities(unit.text) and not any(backer.backs(unit.text) for backer in backers)]
    assert not unbacked, _report(unbacked)


def test_examples_are_labelled_split_and_unique():
    assert not (problems := check_examples(TENANT)), _report(problems)


def test_sample_tickets_are_held_out_examples_in_the_demo_input_format():
    assert not (problems := check_sample_tickets(TENANT)), _report(problems)


def test_routing_policy_parses_and_escalates_taxonomy_intents():
    from services.classifier.routing import load_policy

    policy = load_policy(TENANT / "routing_policy.yaml")
    intents = set(_taxonomy()["intents"])
    assert policy.always_escalate_intents, "a store needs always-escalate intents (fraud, account takeover)"
    assert policy.always_escalate_intents <= intents, sorted(policy.always_escalate_intents - intents)


def test_kpi_baseline_and_repetition_lexicon_parse_with_the_learners_loaders():
    from services.learner.tenant_data import TenantData

    data = TenantData(TENANT.parent)
    baseline = data.baseline("retail")
    assert baseline is not None and "placeholder" in baseline.source
    assert baseline.csat("account_specific", 1) is not None and baseline.handle_time("repetitive", "bot") is not None
    assert data.said_already("retail", "As I said in my first message, the order number is #W1234567")
    assert not data.said_already("retail", "Thanks, the jacket arrived today")


def test_lexicons_are_lists_of_terms():
    catalogue = yaml.safe_load((TENANT / "lexicons" / "product-catalogue.yaml").read_text(encoding="utf-8"))
    names = [p["name"] for p in catalogue["products"]]
    assert len(names) == len(set(names)) and all(isinstance(p["options"], list) for p in catalogue["products"])
    affirmative = yaml.safe_load((TENANT / "lexicons" / "affirmative-words.yaml").read_text(encoding="utf-8"))
    assert set(affirmative) == {"words", "phrases", "negations"}
    assert all(isinstance(w, str) and w == w.lower() for key in affirmative for w in affirmative[key])


# --- the checks can fail --------------------------------------------------------------------------


@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "retail"
    shutil.copytree(TENANT, folder)
    assert not check_examples(folder) and not check_sample_tickets(folder) and not check_taxonomy(folder)
    return folder


def _rewrite_examples(folder: Path, change) -> None:
    columns, rows = _examples(folder / "intents" / "examples.csv")
    rows = change(rows)
    with open(folder / "intents" / "examples.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_checker_catches_an_unknown_label_and_a_bad_split(broken_copy: Path):
    def change(rows):
        rows[0]["label"], rows[1]["split"] = "atm_ate_my_card", "test"
        return rows

    _rewrite_examples(broken_copy, change)
    problems = check_examples(broken_copy)
    assert any("'atm_ate_my_card'" in p for p in problems), problems
    assert any("split 'test'" in p for p in problems), problems


def test_checker_catches_an_intent_without_held_out_rows(broken_copy: Path):
    intent = "website_slow"

    def change(rows):
        for row in rows:
            if row["label"] == intent:
                row["split"] = "train"
        return rows

    _rewrite_examples(broken_copy, change)
    assert any(f"'{intent}' has no ['heldout']" in p for p in check_examples(broken_copy))


def test_checker_catches_an_intent_missing_from_the_classifier_files(broken_copy: Path):
    path = broken_copy / "intents" / "archetypes.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("  website_slow: repetitive\n", ""), encoding="utf-8")
    assert any("website_slow" in p for p in check_taxonomy(broken_copy))


def test_checker_catches_an_uncovered_intent_and_an_unbacked_figure(broken_copy: Path):
    hc = broken_copy / "help-center"
    (hc / "why-doesnt-my-promo-code-work.md").unlink()
    problems = check_intents(hc, broken_copy / "intents" / "taxonomy.yaml")
    assert any("'promo_code_not_working'" in p and "has no article" in p for p in problems), problems
    path = hc / "can-i-get-my-shipping-fee-back.md"
    path.write_text(path.read_text(encoding="utf-8").replace("standard $8.00", "standard $9.00"), encoding="utf-8")
    assert any("'$9.00'" in p for p in check_figures(hc)), check_figures(hc)


def test_checker_catches_a_ticket_that_is_not_held_out(broken_copy: Path):
    heldout = {row["text"] for row in _examples(broken_copy / "intents" / "examples.csv")[1] if row["split"] == "heldout"}
    train_row = next(row for row in _examples(broken_copy / "intents" / "examples.csv")[1] if row["split"] == "train")
    lines = (broken_copy / "sample-tickets.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert first["body"] in heldout
    first.update(body=train_row["text"], label=train_row["label"])
    lines[0] = json.dumps(first)
    (broken_copy / "sample-tickets.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert any(first["id"] in p and "held-out" in p for p in check_sample_tickets(broken_copy))
