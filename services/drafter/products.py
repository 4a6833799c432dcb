"""Which named product a question is about, and whether a quoted article is about it. Pure.

A bank's knowledge base repeats one template per product: "Bronze Savings Account: APY and fees",
"Green Fee-Free Account features", "Platinum Rewards Card: annual fee". Asked "What APY does the
Bronze savings account pay?", retrieval can return the Green account's page, whose every figure is
right for the Green account and wrong for the customer: the wrong figure of the right kind. The
offline drafter judges a reply off the question when the question names a product and no article it
quotes is about that product, by its title or the heading the quoted unit stands under.

A name is what stands before "account", "card" or "saver" in capitals ("Lime Green business
account" -> "Lime Green"), or one word such as "EcoCard". Card networks, countries and acronyms are
not products of the bank, nor is the bank ("my Visa card", "a US account", "my Rho-Bank account"),
and a word capitalised only because it starts a sentence is not a name ("Unauthorised card use").

That is the guess when the tenant has no product catalogue. With one
(`<tenants_dir>/<tenant>/lexicons/product-catalogue.yaml`), a name is one of the catalogue's
products, named by its name or an alias in any case ("my action camera"). The stop list is data:
`named_product` in answer_checks.yaml, overridable per tenant.
"""

from __future__ import annotations

import re
from typing import Protocol, Sequence

from services.drafter.answer_lexicon import AnswerLexicon, CatalogueProduct, default_lexicon
from services.drafter.lexical import content_words

_NAMED_PRODUCT = re.compile(
    r"\b(?P<name>(?:[A-Z][A-Za-z'-]*\s+){1,3})"
    r"(?:(?:business|personal|savings?|checking|credit|debit|rewards?|premium|joint)\s+)*"
    r"(?:[Aa]ccount|[Cc]ard|[Ss]aver)s?\b"
    r"|\b(?P<word>[A-Z][a-z]+(?:Card|Account|Saver))\b"
)
_TITLE_WORD = re.compile(r"[A-Z][a-z][A-Za-z'-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:\n])[\s*_#>-]*$")  # Markdown emphasis and bullets too


class ProductNames(Protocol):
    # Whether every product is known (a catalogue): then a quote is off only when it is about
    # another product; a guess from capitals cannot tell a process article from another product's.
    complete: bool

    def named(self, text: str) -> list[str]:
        """The product names `text` uses, in order."""
        ...

    def is_about(self, product: str, *headings: str) -> bool:
        """Whether any of `headings` (an article title, a section heading) names `product`."""
        ...


def _names(wanted: set[str], headings: Sequence[str]) -> bool:
    return bool(wanted) and any(wanted <= set(content_words(heading)) for heading in headings)


class GuessedProducts:
    """Product names guessed from capitals (no catalogue): the lexicon's `named_product.not_names`
    are the capitalised words before "card"/"account" that name no product of the bank."""

    complete = False

    def __init__(self, lexicon: AnswerLexicon) -> None:
        self._not_names = frozenset(lexicon.entries("named_product", "not_names"))

    def named(self, text: str) -> list[str]:
        names: list[str] = []
        for match in _NAMED_PRODUCT.finditer(text):
            if match.group("word"):
                if match.group("word").lower() not in self._not_names:
                    names.append(match.group("word"))
                continue
            words = match.group("name").split()
            if _SENTENCE_START.search(text[: match.start("name")]):
                words = words[1:]  # capitalised because it starts a sentence
            words = [w for w in words if _TITLE_WORD.fullmatch(w) and w.lower() not in self._not_names and "bank" not in w.lower()]
            if words:
                names.append(" ".join(words))
        return list(dict.fromkeys(names))

    def is_about(self, product: str, *headings: str) -> bool:
        return _names(set(content_words(product)), headings)


class CatalogueProducts:
    """Product names from the tenant's catalogue: a text names a product when it uses its name or
    one of its aliases in any case ("my action camera"), a plural too; the name is the catalogue's.
    A heading is about the product when it names it by its name or an alias."""

    complete = True

    def __init__(self, products: Sequence[CatalogueProduct]) -> None:
        self._spellings: dict[str, tuple[str, ...]] = {}  # name -> its name and aliases
        product_of: dict[str, str] = {}  # a lower-case spelling -> the product's name
        for product in products:
            spellings = tuple(dict.fromkeys([product.name, *product.aliases]))
            self._spellings[product.name] = spellings
            for spelling in spellings:
                product_of.setdefault(" ".join(spelling.lower().split()), product.name)
        self._product_of = product_of
        longest_first = sorted(product_of, key=len, reverse=True)
        alternatives = "|".join(r"\s+".join(map(re.escape, s.split())) for s in longest_first)
        self._pattern = re.compile(rf"(?<![\w-])({alternatives})(?:e?s)?(?![\w-])", re.I) if alternatives else None

    def named(self, text: str) -> list[str]:
        if self._pattern is None:
            return []
        found = (self._product_of[" ".join(m.group(1).lower().split())] for m in self._pattern.finditer(text))
        return list(dict.fromkeys(found))

    def is_about(self, product: str, *headings: str) -> bool:
        return any(_names(set(content_words(spelling)), headings) for spelling in self._spellings.get(product, (product,)))


_DEFAULT = GuessedProducts(default_lexicon())


def named_products(question: str) -> list[str]:
    """The product names a question uses ("Bronze", "Lime Green", "EcoCard"), in order (no
    catalogue, the default lexicon)."""
    return _DEFAULT.named(question)


def is_about(product: str, *headings: str) -> bool:
    """Whether any of `headings` (an article title, a section heading) names `product`."""
    return _DEFAULT.is_about(product, *headings)
