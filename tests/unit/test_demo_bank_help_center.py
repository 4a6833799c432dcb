"""The demo-bank help center (tenants/demo-bank/help-center/*.md) is consistent tenant data.

Each check is a function taking a folder (and the archetypes file) and returning a list of problems,
so the same checks run on the real folder and, to prove they can fail, on broken copies in tmp_path.

Rules checked:
- every file has exactly the front-matter keys below, with the right types and dates;
- ids are unique integers, titles unique, file name = slug of the title;
- every intent in services/classifier/archetypes.yaml has an article, and every intent an article
  names exists there (focused articles name 1 to 3 intents);
- exactly ONE article is `is_policy: true` (the canonical "Fees, limits and timings");
- every figure in a non-policy article also appears in the policy article: each number token
  ("£5.00", "1.5%", "120") and each figure phrase as written ("3 to 5 working days", "7 days"),
  so "5 days" or "£5" where the policy says "5 working days" or "£5.00" fails; number words
  ("two", "ten") are not used in non-policy articles, figures are written as digits;
- only one currency symbol (£) is used;
- each body has 40 to 400 words and opens with a plain paragraph of 1 to 3 sentences.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELP_CENTER = ROOT / "tenants" / "demo-bank" / "help-center"
ARCHETYPES = ROOT / "services" / "classifier" / "archetypes.yaml"

FRONT_MATTER_KEYS = {"id", "title", "intents", "updated_at", "review_by", "is_policy", "locale"}
UPDATED_FROM, UPDATED_TO = date(2026, 9, 1), date(2026, 11, 30)
REVIEW_YEAR = 2027
MIN_WORDS, MAX_WORDS = 40, 400
MAX_INTENTS = 3
CURRENCY = "£"

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_ONE_NUMBER = rf"[£$€]?(?:{_NUM})%?(?![\w])"
# A figure as written: a number (with currency or %), an optional range end, an optional time unit.
_FIGURE = re.compile(
    rf"(?<![\w.,£$€])(?P<first>{_ONE_NUMBER})"
    rf"(?:\s*(?:to|-|–)\s*(?P<second>{_ONE_NUMBER}))?"
    r"(?:\s+(?P<unit>(?:working\s+|calendar\s+)?(?:minutes?|hours?|days?|weeks?|months?|years?))\b)?"
)
_LIST_NUMBERING = re.compile(r"(?m)^\s*\d+[.)]\s")
_NUMBER_WORDS = re.compile(
    r"\b(?:zero|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundred|thousand|million|billion)\b",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


@dataclass(frozen=True)
class Article:
    path: Path
    meta: dict
    body: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_policy(self) -> bool:
        return self.meta.get("is_policy") is True


# --- parsing ------------------------------------------------------------------------------------


def load_folder(folder: Path) -> tuple[list[Article], list[str]]:
    """The articles of `folder` and the files that could not be parsed."""
    articles, problems = [], []
    files = sorted(Path(folder).glob("*.md"))
    if not files:
        problems.append(f"{folder}: no .md files")
    for path in files:
        text = path.read_text(encoding="utf-8")
        match = _FRONT_MATTER.match(text)
        if not match:
            problems.append(f"{path.name}: no YAML front matter between '---' lines at the top")
            continue
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: front matter is not valid YAML: {exc}")
            continue
        if not isinstance(meta, dict):
            problems.append(f"{path.name}: front matter is not a mapping")
            continue
        articles.append(Article(path, meta, text[match.end():]))
    return articles, problems


def known_intents(archetypes: Path = ARCHETYPES) -> set[str]:
    return set(yaml.safe_load(archetypes.read_text(encoding="utf-8"))["intents"])


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower().replace("'", "")).strip("-")


def figures(body: str) -> list[tuple[str, set[str]]]:
    """(figure phrase as written, its number tokens) for every figure in `body`; list numbering
    ("1. Open the app") is not a figure."""
    text = _LIST_NUMBERING.sub(" ", body)
    found = []
    for match in _FIGURE.finditer(text):
        phrase = re.sub(r"\s+", " ", match.group(0)).strip().lower()
        tokens = {match["first"]} | ({match["second"]} if match["second"] else set())
        found.append((phrase, tokens))
    return found


def word_count(body: str) -> int:
    return len(re.findall(r"\S*[A-Za-z0-9£%]\S*", body))


def first_paragraph(body: str) -> str:
    return body.strip().split("\n\n", 1)[0].strip()


# --- checks -------------------------------------------------------------------------------------


def check_front_matter(folder: Path) -> list[str]:
    articles, problems = load_folder(folder)
    ids: dict[int, str] = {}
    titles: dict[str, str] = {}
    for art in articles:
        meta, name = art.meta, art.name
        keys = set(meta)
        if keys != FRONT_MATTER_KEYS:
            problems.append(
                f"{name}: front-matter keys must be exactly {sorted(FRONT_MATTER_KEYS)}; "
                f"missing {sorted(FRONT_MATTER_KEYS - keys)}, unexpected {sorted(keys - FRONT_MATTER_KEYS)}"
            )
            continue
        if type(meta["id"]) is not int:
            problems.append(f"{name}: id must be an integer, got {meta['id']!r}")
        elif meta["id"] in ids:
            problems.append(f"{name}: id {meta['id']} is also used by {ids[meta['id']]}")
        else:
            ids[meta["id"]] = name
        title = meta["title"]
        if not isinstance(title, str) or not title.strip():
            problems.append(f"{name}: title must be a non-empty string, got {title!r}")
        else:
            if title in titles:
                problems.append(f"{name}: title {title!r} is also used by {titles[title]}")
            titles[title] = name
            if art.path.stem != slug(title):
                problems.append(f"{name}: file name should be {slug(title)}.md (slug of the title)")
        intents = meta["intents"]
        if not isinstance(intents, list) or not all(isinstance(i, str) and i for i in intents):
            problems.append(f"{name}: intents must be a list of intent names, got {intents!r}")
        if type(meta["is_policy"]) is not bool:
            problems.append(f"{name}: is_policy must be true or false, got {meta['is_policy']!r}")
        if meta["locale"] != "en-us":
            problems.append(f"{name}: locale must be 'en-us', got {meta['locale']!r}")
        updated, review = meta["updated_at"], meta["review_by"]
        if not isinstance(updated, datetime) or updated.tzinfo is None:
            problems.append(f"{name}: updated_at must be an ISO 8601 UTC timestamp, got {updated!r}")
            continue
        if not isinstance(review, date) or isinstance(review, datetime):
            problems.append(f"{name}: review_by must be an ISO 8601 date (YYYY-MM-DD), got {review!r}")
            continue
        if not UPDATED_FROM <= updated.astimezone(timezone.utc).date() <= UPDATED_TO:
            problems.append(f"{name}: updated_at {updated.isoformat()} is outside {UPDATED_FROM}..{UPDATED_TO}")
        if review.year != REVIEW_YEAR:
            problems.append(f"{name}: review_by {review} is not in {REVIEW_YEAR}")
        if review <= updated.date():
            problems.append(f"{name}: review_by {review} is not after updated_at {updated.date()}")
    return problems


def check_intents(folder: Path, archetypes: Path = ARCHETYPES) -> list[str]:
    articles, problems = load_folder(folder)
    known = known_intents(archetypes)
    covered: set[str] = set()
    for art in articles:
        intents = art.meta.get("intents") or []
        if not isinstance(intents, list):
            continue  # reported by check_front_matter
        for intent in intents:
            if intent not in known:
                problems.append(f"{art.name}: intent {intent!r} is not in {archetypes.name}")
        if not art.is_policy and not 1 <= len(intents) <= MAX_INTENTS:
            problems.append(f"{art.name}: a focused article names 1 to {MAX_INTENTS} intents, it names {len(intents)}")
        covered.update(intents)
    for intent in sorted(known - covered):
        problems.append(f"intent {intent!r} from {archetypes.name} has no article")
    return problems


def check_policy(folder: Path) -> list[str]:
    articles, problems = load_folder(folder)
    policy = [art.name for art in articles if art.is_policy]
    if len(policy) != 1:
        problems.append(f"exactly one article must be is_policy: true (the canonical figures), found {policy}")
    return problems


def check_figures(folder: Path) -> list[str]:
    """Every figure of a non-policy article is stated in the policy article, in the same form."""
    articles, problems = load_folder(folder)
    policy_phrases: set[str] = set()
    policy_tokens: set[str] = set()
    for art in articles:
        if art.is_policy:
            for phrase, tokens in figures(art.body):
                policy_phrases.add(phrase)
                policy_tokens.update(tokens)
    for art in articles:
        if art.is_policy:
            continue
        for phrase, tokens in figures(art.body):
            for token in sorted(tokens - policy_tokens):
                problems.append(f"{art.name}: number {token!r} (in {phrase!r}) is not in the policy article")
            if tokens <= policy_tokens and phrase not in policy_phrases:
                problems.append(
                    f"{art.name}: figure {phrase!r} is not written this way in the policy article "
                    f"(use the policy's exact digits and units)"
                )
        for match in _NUMBER_WORDS.finditer(art.body):
            problems.append(f"{art.name}: number word {match.group(0)!r}; write figures as digits, as the policy article does")
    return problems


def check_currency(folder: Path) -> list[str]:
    articles, problems = load_folder(folder)
    for art in articles:
        for symbol in "$€":
            if symbol in art.body:
                problems.append(f"{art.name}: uses {symbol!r}; the help center states amounts in {CURRENCY} only")
    return problems


def check_bodies(folder: Path) -> list[str]:
    articles, problems = load_folder(folder)
    for art in articles:
        words = word_count(art.body)
        if not MIN_WORDS <= words <= MAX_WORDS:
            problems.append(f"{art.name}: body has {words} words, expected {MIN_WORDS} to {MAX_WORDS}")
        if re.search(r"(?m)^#\s", art.body):
            problems.append(f"{art.name}: body has a level-1 heading; the title lives in the front matter")
        opening = first_paragraph(art.body)
        if not opening or opening.startswith(("#", "-", "*", "1.")):
            problems.append(f"{art.name}: body must open with a plain paragraph that answers the question")
            continue
        sentences = [s for s in _SENTENCE_END.split(opening) if s.strip()]
        if not 1 <= len(sentences) <= 3:
            problems.append(f"{art.name}: first paragraph has {len(sentences)} sentences, expected 1 to 3")
        if re.search(r"\b(?:as mentioned|(?:see|as) (?:above|below))\b", opening, re.I):
            problems.append(f"{art.name}: first paragraph must stand on its own (no 'above'/'below' references)")
    return problems


CHECKS = (check_front_matter, check_intents, check_policy, check_figures, check_currency, check_bodies)


def all_problems(folder: Path, archetypes: Path = ARCHETYPES) -> list[str]:
    problems = []
    for check in CHECKS:
        problems += check(folder, archetypes) if check is check_intents else check(folder)
    return problems


def _report(problems: list[str]) -> str:
    return "\n".join(["", *problems])


# --- the real help center ------------------------------------------------------------------------


def test_front_matter_is_complete_and_typed():
    assert not (problems := check_front_matter(HELP_CENTER)), _report(problems)


def test_every_intent_has_an_article_and_no_unknown_intents():
    assert not (problems := check_intents(HELP_CENTER)), _report(problems)


def test_exactly_one_policy_article():
    assert not (problems := check_policy(HELP_CENTER)), _report(problems)


def test_every_figure_is_backed_by_the_policy_article():
    assert not (problems := check_figures(HELP_CENTER)), _report(problems)


def test_one_currency():
    assert not (problems := check_currency(HELP_CENTER)), _report(problems)


def test_article_bodies_have_the_expected_shape():
    assert not (problems := check_bodies(HELP_CENTER)), _report(problems)


def test_the_retriever_loads_the_folder_with_the_same_metadata():
    """The pipeline's own loader reads the same ids, intents and policy flag."""
    from services.retriever.articles import load_articles

    articles, _ = load_folder(HELP_CENTER)
    loaded = {a.article_id: a for a in load_articles(HELP_CENTER)}
    assert set(loaded) == {str(a.meta["id"]) for a in articles}
    for art in articles:
        got = loaded[str(art.meta["id"])]
        assert got.title == art.meta["title"] and got.is_policy is art.is_policy, art.name
        assert got.intents == tuple(art.meta["intents"]), art.name
        assert got.review_by is not None and got.updated_at is not None and got.review_by > got.updated_at, art.name


def test_the_policy_ledger_finds_every_focused_quantity_in_the_policy_article():
    """Cross-check with the drafter's claim ledger: each quantity (value and unit) it reads in a
    focused article is one it also reads in the policy article."""
    from services.drafter.policy_ledger import quantities

    articles, _ = load_folder(HELP_CENTER)
    canonical = {(q.unit, q.value) for a in articles if a.is_policy for q in quantities(a.body, strict=False)}
    missing = [
        f"{a.name}: {q.text!r} ({q.value:g} {q.unit})"
        for a in articles
        if not a.is_policy
        for q in quantities(a.body)
        if (q.unit, q.value) not in canonical
    ]
    assert not missing, _report(missing)


def test_the_policy_article_backs_every_focused_figure_sentence_under_the_ledger_rules():
    """What the drafter's ledger would do if a reply stated a focused article's figure sentence and
    cited the policy article: some passage of the policy article must verify it (same quantity and
    unit, on a line sharing a content word, naming nothing the passage does not name)."""
    from services.drafter.passage_units import passage_units
    from services.drafter.policy_ledger import PassageBacking, quantities
    from services.retriever.articles import chunk_article, load_articles
    from supportflow.contracts.v1 import ticket_pb2 as tk

    def passages(article):
        return [
            tk.EvidencePassage(
                article_id=article.article_id, chunk_id=chunk.chunk_id, title=article.title,
                section=chunk.section, text=chunk.text, is_policy=article.is_policy,
            )
            for chunk in chunk_article(article)
        ]

    articles = load_articles(HELP_CENTER)
    backers = [PassageBacking(p) for a in articles if a.is_policy for p in passages(a)]
    unbacked = [
        f"{article.title}: {unit.text!r}"
        for article in articles
        if not article.is_policy
        for passage in passages(article)
        for unit in passage_units(passage, 0)
        if quantities(unit.text) and not any(backer.backs(unit.text) for backer in backers)
    ]
    assert not unbacked, _report(unbacked)


# --- the checks can fail ---------------------------------------------------------------------------


@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "help-center"
    shutil.copytree(HELP_CENTER, folder)
    assert not all_problems(folder), "the copy starts clean"
    return folder


def _article_for(folder: Path, intent: str) -> Path:
    for art in load_folder(folder)[0]:
        if intent in (art.meta.get("intents") or []):
            return art.path
    raise AssertionError(f"no article for {intent}")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_checker_catches_a_missing_intent(broken_copy: Path):
    _article_for(broken_copy, "card_swallowed").unlink()
    problems = check_intents(broken_copy)
    assert any("'card_swallowed'" in p and "has no article" in p for p in problems), problems


def test_checker_catches_an_unknown_intent(broken_copy: Path):
    _edit(_article_for(broken_copy, "card_swallowed"), "[card_swallowed]", "[card_swallowed, atm_ate_my_card]")
    assert any("'atm_ate_my_card'" in p for p in check_intents(broken_copy))


def test_checker_catches_an_unbacked_figure(broken_copy: Path):
    path = _article_for(broken_copy, "transfer_fee_charged")
    _edit(path, "costs £3.00", "costs £7.50")
    problems = check_figures(broken_copy)
    assert any(path.name in p and "'£7.50'" in p for p in problems), problems


@pytest.mark.parametrize(
    ("intent", "old", "new"),
    [
        ("pending_card_payment", "after 7 days", "after 7 working days"),  # unit differs
        ("card_delivery_estimate", "3 to 5 working days", "3-5 working days"),  # range written differently
        ("lost_or_stolen_card", "costs £5.00", "costs £5"),  # amount written differently
        ("age_limit", "at least 18 years old", "at least eighteen years old"),  # number word
    ],
)
def test_checker_catches_a_figure_in_another_form(broken_copy: Path, intent: str, old: str, new: str):
    path = _article_for(broken_copy, intent)
    _edit(path, old, new)
    assert any(path.name in p for p in check_figures(broken_copy))


def test_checker_catches_front_matter_mistakes(broken_copy: Path):
    path = _article_for(broken_copy, "card_arrival")
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^review_by: .*$", "review_by: 2026-01-01", text)
    text = re.sub(r"(?m)^id: .*$", "id: '3600100001'", text)
    path.write_text(text.replace("locale: en-us\n", "locale: en-us\nowner: cards\n"), encoding="utf-8")
    problems = check_front_matter(broken_copy)
    assert any("unexpected ['owner']" in p for p in problems), problems
    _edit(path, "owner: cards\n", "")
    problems = check_front_matter(broken_copy)
    assert any("id must be an integer" in p for p in problems), problems
    assert any("review_by 2026-01-01" in p for p in problems), problems


def test_checker_catches_a_second_policy_article_and_a_short_body(broken_copy: Path):
    path = _article_for(broken_copy, "age_limit")
    text = path.read_text(encoding="utf-8").replace("is_policy: false", "is_policy: true")
    path.write_text(text.split("\n---\n", 1)[0] + "\n---\nYou must be an adult.\n", encoding="utf-8")
    assert check_policy(broken_copy)
    assert any("words" in p for p in check_bodies(broken_copy))
