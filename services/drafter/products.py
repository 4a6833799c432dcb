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
"""

from __future__ import annotations

import re

from services.drafter.lexical import content_words

_NAMED_PRODUCT = re.compile(
    r"\b(?P<name>(?:[A-Z][A-Za-z'-]*\s+){1,3})"
    r"(?:(?:business|personal|savings?|checking|credit|debit|rewards?|premium|joint)\s+)*"
    r"(?:[Aa]ccount|[Cc]ard|[Ss]aver)s?\b"
    r"|\b(?P<word>[A-Z][a-z]+(?:Card|Account|Saver))\b"
)
_TITLE_WORD = re.compile(r"[A-Z][a-z][A-Za-z'-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:\n])[\s*_#>-]*$")  # Markdown emphasis and bullets too
# Capitalised words before "card"/"account" that do not name one of the bank's products.
_NOT_NAMES = frozenset(
    "my the a an your our this that these those which what how can could do does is are was will would "
    "if when why where new old first second other another same business personal savings saving checking "
    "credit debit virtual physical joint current main primary bank visa mastercard maestro amex american "
    "express discover unionpay european international foreign domestic local online mobile account accounts "
    "card cards".split()
)


def named_products(question: str) -> list[str]:
    """The product names a question uses ("Bronze", "Lime Green", "EcoCard"), in order."""
    names: list[str] = []
    for match in _NAMED_PRODUCT.finditer(question):
        if match.group("word"):
            if match.group("word").lower() not in _NOT_NAMES:
                names.append(match.group("word"))
            continue
        words = match.group("name").split()
        if _SENTENCE_START.search(question[: match.start("name")]):
            words = words[1:]  # capitalised because it starts a sentence
        words = [w for w in words if _TITLE_WORD.fullmatch(w) and w.lower() not in _NOT_NAMES and "bank" not in w.lower()]
        if words:
            names.append(" ".join(words))
    return list(dict.fromkeys(names))


def is_about(product: str, *headings: str) -> bool:
    """Whether any of `headings` (an article title, a section heading) names `product`."""
    wanted = set(content_words(product))
    return bool(wanted) and any(wanted <= set(content_words(heading)) for heading in headings)
