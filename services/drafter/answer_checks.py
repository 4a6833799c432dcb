"""Whether the passages a reply quotes answer the question: the offline drafter's near-miss checks,
one mechanism. Pure.

Each check is an AnswerCheck: given the question and the quoted units (each with the section
heading and article title it stands under), it returns None when it has no objection, or the
reason the agent reads. The drafter runs a tenant's checks in a fixed order and the first
objection holds the draft: the question names a product no quoted article is about; it moves
money one way and the quotes the other; the customer waits for something and no quote speaks of
delivery, timing or status; it asks how much or how long and no quote gives such a figure; it
asks how to do something and no quote tells how.

The words the checks read come from answer_checks.yaml and a tenant's
`lexicons/answer-checks.yaml` (answer_lexicon.py); a tenant's `lexicons/product-catalogue.yaml`
names its products for the named-product check instead of a guess from capitals.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from services.drafter.answer_lexicon import (
    CATALOGUE_FILE,
    TENANT_FILE,
    AnswerLexicon,
    CatalogueProduct,
    default_lexicon,
    parse_catalogue,
    parse_lexicon,
    read_yaml,
)
from services.drafter.arrival import ArrivalReader
from services.drafter.howto import HowToReader
from services.drafter.money_direction import Direction, MoneyDirectionReader
from services.drafter.policy_ledger import quantities
from services.drafter.products import CatalogueProducts, GuessedProducts, ProductNames
from services.drafter.templates import join_items


@dataclass(frozen=True)
class QuotedUnit:
    """A unit a reply quotes, with what it stands under."""

    text: str
    section: str = ""
    title: str = ""

    def readings(self) -> tuple[str, str, str]:
        """Its text, then its section heading, then its article title."""
        return self.text, self.section, self.title


class AnswerCheck(Protocol):
    name: str

    def judge(self, question: str, quoted: Sequence[QuotedUnit]) -> str | None:
        """None when the quoted units may answer `question`; otherwise why they do not."""
        ...


class NamedProductCheck:
    """The question names a product and no quoted article is about it (by its title or the heading
    over the quoted unit); with a catalogue, only when a quoted article is about another product."""

    name = "named_product"

    def __init__(self, products: ProductNames) -> None:
        self.products = products

    def judge(self, question: str, quoted: Sequence[QuotedUnit]) -> str | None:
        named = self.products.named(question)
        if not named or any(self.products.is_about(product, unit.title, unit.section) for product in named for unit in quoted):
            return None
        if self.products.complete and not any(
                set(self.products.named(f"{unit.title}\n{unit.section}")) - set(named) for unit in quoted):
            # With the whole catalogue known, a quote about no product at all (how returns work) may
            # well answer "can I return my shirt?": the near miss is another product's page.
            return None
        names = join_items([f'"{product}"' for product in named])
        return f"the question names {names}; no quoted article is about {'it' if len(named) == 1 else 'them'}"


class MoneyDirectionCheck:
    """The question moves money one way and every quoted unit that names a direction (its own, else
    its heading's, else its title's) names the other."""

    name = "money_direction"

    def __init__(self, reader: MoneyDirectionReader) -> None:
        self.reader = reader

    def unit_direction(self, unit: QuotedUnit) -> Direction | None:
        for text in unit.readings():
            direction = self.reader.direction(text)
            if direction is not None:
                return direction
        return None

    def judge(self, question: str, quoted: Sequence[QuotedUnit]) -> str | None:
        asked = self.reader.direction(question)
        if asked is None:
            return None
        said = {self.unit_direction(unit) for unit in quoted} - {None}
        if not said or asked in said:
            return None
        (other,) = said
        return f"the question is about {asked.value} money; the quoted passages are about {other.value}"


class WaitingCheck:
    """The customer waits for something and no quoted unit, heading or title says a word about
    delivery, timing or status."""

    name = "waiting"

    def __init__(self, reader: ArrivalReader) -> None:
        self.reader = reader

    def judge(self, question: str, quoted: Sequence[QuotedUnit]) -> str | None:
        if not self.reader.awaits(question) or any(self.reader.speaks_of(text) for unit in quoted for text in unit.readings()):
            return None
        return "the customer is waiting for something; the quoted passages say nothing of delivery, timing or status"


# A question that asks how much or how long wants a figure of that kind, or a word standing for one
# ("free", "instantly"); a reply that quotes none answers something else ("How much is a wire?"
# answered with how to send one).
_ASKED_FIGURES = (
    (
        re.compile(r"\bhow much\b(?! time)|\bwhat (is|are|'s) the (\w+ ){0,3}(fees?|charges?|costs?|prices?)\b", re.I),
        frozenset({"USD", "EUR", "GBP", "percent", "count"}),
        re.compile(r"\b(free|no (\w+ )?(fees?|charges?|costs?)|waive[sd]?|at no (extra )?(cost|charge))\b", re.I),
        "an amount",
    ),
    (
        re.compile(r"\bhow (long|soon|fast|quickly)\b|\bhow much time\b", re.I),
        frozenset({"second", "minute", "hour", "day", "week", "month", "year", "time"}),
        re.compile(r"\b(instant\w*|immediate\w*|same[- ]day|next[- ]day|overnight|real[- ]time)\b", re.I),
        "a time",
    ),
)


class MissingFigureCheck:
    """The question asks how much or how long and no quoted unit gives such a figure."""

    name = "missing_figure"

    @staticmethod
    def asks_for_figure(question: str) -> bool:
        """Whether the question asks how much or how long."""
        return any(asks.search(question) for asks, _, _, _ in _ASKED_FIGURES)

    @staticmethod
    def missing(question: str, quoted: Sequence[QuotedUnit]) -> str:
        """What the question asks a figure of ("an amount", "a time") when no quoted unit gives one;
        otherwise ""."""
        for asks, kinds, stands_for, name in _ASKED_FIGURES:
            if asks.search(question) and not any(
                stands_for.search(unit.text) or kinds & {q.unit for q in quantities(unit.text, strict=False)}
                for unit in quoted
            ):
                return name
        return ""

    def judge(self, question: str, quoted: Sequence[QuotedUnit]) -> str | None:
        wanted = self.missing(question, quoted)
        return f"the question asks for {wanted}; the quoted passages give none" if wanted else None


class HowToCheck:
    """The question asks how to do something and no quoted unit, heading or title tells the reader
    to do it."""

    name = "how_to"

    def __init__(self, reader: HowToReader) -> None:
        self.reader = reader

    def judge(self, question: str, quoted: Sequence[QuotedUnit]) -> str | None:
        action = self.reader.asked_action(question)
        if not action or any(self.reader.tells_how(text, action) for unit in quoted for text in unit.readings()):
            return None
        return f'the question asks how to do something ("{action}"); the quoted passages do not say how'


@dataclass(frozen=True)
class AnswerChecks:
    """One tenant's checks, in the order they are run, and the product names they read (the
    drafter also quotes from the named product's own articles)."""

    products: ProductNames
    checks: tuple[AnswerCheck, ...]

    def first_objection(self, question: str, quoted: Sequence[QuotedUnit]) -> str | None:
        for check in self.checks:
            reason = check.judge(question, quoted)
            if reason is not None:
                return reason
        return None


def answer_checks(lexicon: AnswerLexicon, catalogue: Sequence[CatalogueProduct] | None = None) -> AnswerChecks:
    """The five checks reading `lexicon`, products by `catalogue` when there is one."""
    products: ProductNames = CatalogueProducts(catalogue) if catalogue is not None else GuessedProducts(lexicon)
    return AnswerChecks(
        products,
        (
            NamedProductCheck(products),
            MoneyDirectionCheck(MoneyDirectionReader(lexicon)),
            WaitingCheck(ArrivalReader(lexicon)),
            MissingFigureCheck(),
            HowToCheck(HowToReader(lexicon)),
        ),
    )


class TenantAnswerChecks:
    """Each tenant's checks, built once from `tenants_dir` (None: every tenant has the defaults):
    `<tenant>/lexicons/answer-checks.yaml` over the default lexicon, and
    `<tenant>/lexicons/product-catalogue.yaml` when there is one."""

    def __init__(self, tenants_dir: Path | None = None) -> None:
        self._dir = Path(tenants_dir) if tenants_dir is not None else None
        self._default_lexicon = default_lexicon()
        self._default = answer_checks(self._default_lexicon)
        self._tenants: dict[str, AnswerChecks] = {}
        self._lock = threading.Lock()

    def for_tenant(self, tenant: str) -> AnswerChecks:
        with self._lock:
            if tenant not in self._tenants:
                lexicon_path, catalogue_path = self._file(tenant, TENANT_FILE), self._file(tenant, CATALOGUE_FILE)
                if lexicon_path is None and catalogue_path is None:
                    self._tenants[tenant] = self._default
                else:
                    lexicon = (parse_lexicon(read_yaml(lexicon_path), str(lexicon_path), self._default_lexicon)
                               if lexicon_path else self._default_lexicon)
                    catalogue = parse_catalogue(read_yaml(catalogue_path), str(catalogue_path)) if catalogue_path else None
                    self._tenants[tenant] = answer_checks(lexicon, catalogue)
            return self._tenants[tenant]

    def check_all(self) -> list[str]:
        """Read every tenant's files now (at start-up), so a malformed one stops the drafter with its
        path and key before any ticket; the tenants with a lexicon or a catalogue of their own."""
        if self._dir is None or not self._dir.is_dir():
            return []
        tenants = sorted(p.name for p in self._dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        return [tenant for tenant in tenants if self.for_tenant(tenant) is not self._default]

    def _file(self, tenant: str, name: Path) -> Path | None:
        # A tenant id is a folder name here: nothing that could leave the tenants folder.
        if self._dir is None or re.fullmatch(r"[A-Za-z0-9][\w.-]*", tenant or "") is None or ".." in tenant:
            return None
        path = self._dir / tenant / name
        return path if path.is_file() else None
