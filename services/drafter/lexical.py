"""Word-level comparison of texts: content words, a light stemmer and weighted overlap.

The drafter compares short texts (a ticket's problem statement, a KB sentence, a policy clause);
a small suffix-stripping stemmer that folds plurals, verb endings and a few derivations is enough
to make "fees" meet "fee" and "liable" meet "liability", and keeps the behaviour easy to predict.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from typing import Iterable, Sequence

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't
    down during each few for from further get got had hadn't has hasn't have haven't having he her here
    hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just
    let's me more most mustn't my myself no nor not now of off on once only or other ought our ours
    ourselves out over own please same shan't she should shouldn't so some such than thank thanks that
    that's the their theirs them themselves then there there's these they they'd they'll they're
    they've this those through to too under until up us very was wasn't we we'd we'll we're we've
    were weren't what what's when when's where where's which while who who's whom why why's will with
    won't would wouldn't you you'd you'll you're you've your yours yourself yourselves hi hello hey
    dear regards team also still yet already want wanted need needed would like know tell help
    without within via per may might must shall will can could any every use used using make made
    said say says go see
    """.split()
)

# Words customers and articles use for the same thing, folded to one stem.
SYNONYMS = {
    "charg": "fee",
    "cost": "fee",
    "pric": "fee",
    "withdrawal": "withdraw",
    "arrival": "arriv",
    "delivery": "deliver",
    "cancellat": "cancel",
    "cancell": "cancel",
    "abroad": "international",
    "overseas": "international",
    "foreign": "international",
}

# Suffixes folded away, longest first: enough for "liable"/"liability", "fees"/"fee",
# "charged"/"charge", "acknowledge"/"acknowledgment" to meet.
_SUFFIXES = (
    ("abilities", "abl"), ("ibilities", "ibl"), ("ability", "abl"), ("ibility", "ibl"),
    ("ations", "ate"), ("ation", "ate"), ("ments", ""), ("ment", ""), ("ness", ""),
    ("able", "abl"), ("ible", "ibl"), ("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", "e"), ("s", ""),
)


@functools.lru_cache(maxsize=65536)  # pure, and the same words come back ticket after ticket
def stem(word: str) -> str:
    if len(word) > 3:
        for suffix, replacement in _SUFFIXES:
            shortest = 2 if "bilit" in suffix else 3
            if word.endswith(suffix) and len(word) - len(suffix) >= shortest and not (suffix == "s" and word.endswith("ss")):
                word = word[: -len(suffix)] + replacement
                if suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                    word = word[:-1]  # "transferring" -> "transfer"
                break
        if len(word) > 4 and word.endswith("e"):
            word = word[:-1]
    return SYNONYMS.get(word, word)


_WORD = re.compile(r"[a-z][a-z0-9']*")


def content_words(text: str) -> list[str]:
    """Stemmed words of `text` that carry meaning (no stopwords, no bare numbers)."""
    words = _WORD.findall(text.lower().replace("’", "'"))
    return [stem(w.removesuffix("'s")) for w in words if w not in STOPWORDS and len(w) > 1]


_TITLECASE = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)*\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:]\s+)$")


def named_words(text: str, *, sentence_initial: bool = False) -> set[str]:
    """Stems of capitalised words: the names a text relies on ("the Purple Account fee",
    "EcoCard"). A word capitalised only because it starts a sentence is not a name unless
    `sentence_initial`; stopwords never are."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        for match in _TITLECASE.finditer(line):
            if not sentence_initial and _SENTENCE_START.search(line[: match.start()]):
                continue
            word = match.group().lower()
            if word not in STOPWORDS:
                names.add(stem(word))
    return names


def idf_weights(documents: Sequence[Iterable[str]]) -> dict[str, float]:
    """Smoothed inverse document frequency of each word over `documents` (sets of words)."""
    frequency: Counter[str] = Counter()
    for words in documents:
        frequency.update(set(words))
    total = len(documents)
    return {word: math.log(1.0 + (total + 1) / (count + 0.5)) for word, count in frequency.items()}


def weighted_coverage(query: dict[str, float], words: Iterable[str]) -> float:
    """Share of the query's weight whose words appear in `words` (0..1)."""
    total = sum(query.values())
    if total <= 0:
        return 0.0
    present = set(words)
    return sum(weight for word, weight in query.items() if word in present) / total
