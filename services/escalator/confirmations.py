"""A customer's reply on their own channel as the confirmation of a pending proposal.

FeedbackReceived.customer_reply (tickets.feedback; the gateway emits one for each reply a customer
writes on a ticket) is read against the tenant's affirmative words: tenant data
(`<tenants_dir>/<tenant>/lexicons/affirmative-words.yaml`: `words`, `phrases`, `negations`), with the
lexicon shipped beside the escalator (`affirmative_words.yaml`) as the default. Pure: no Kafka here.

The reply confirms only when the ticket has exactly one open proposal (with two, a "yes" does not
say which) and the reply says yes, says nothing against it, and is short; anything else is left to
the agent. The confirmation then goes through the action gate exactly as one from the gateway's
confirmation endpoint, recorded with `confirmed_by` "customer:<channel>" and the reply's event as
its reference.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from services.escalator.config import ConfigError

LEXICON_FILE = Path("lexicons") / "affirmative-words.yaml"  # in a tenant's folder
DEFAULT_LEXICON = "affirmative_words.yaml"  # shipped beside the escalator
KEYS = ("words", "phrases", "negations", "max_words")


def normalized_words(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(re.sub(r"[^\w'\s]+", " ", text).split())


def _says(text: str, entry: str) -> bool:
    return re.search(rf"(?<![\w']){re.escape(entry)}(?![\w'])", text) is not None


@dataclass(frozen=True)
class ConfirmationLexicon:
    words: tuple[str, ...]
    phrases: tuple[str, ...]
    negations: tuple[str, ...]
    max_words: int

    def confirms(self, reply: str) -> bool:
        """A short reply that says yes, says nothing against it, and asks nothing."""
        lowered = " ".join(reply.lower().replace("\u2019", "'").split())
        text = normalized_words(reply)
        if not text or len(text.split()) > self.max_words or "?" in reply:
            return False
        said = any(_says(text, word) for word in self.words) or any(phrase in lowered for phrase in self.phrases)
        return said and not any(_says(text, negation) for negation in self.negations)

    @classmethod
    def parse(cls, data: Any, where: str, default: "ConfirmationLexicon | None" = None) -> "ConfirmationLexicon":
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with {', '.join(KEYS[:3])}")
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")

        def entries(name: str) -> tuple[str, ...]:
            value = data.get(name) or []
            if not isinstance(value, list) or not all(isinstance(e, str) and e.strip() for e in value):
                raise ConfigError(f"{where}: {name} must be a list of quoted, non-empty strings "
                                  "(unquoted, YAML reads yes and no as booleans)")
            return tuple(" ".join(e.lower().split()) for e in value)

        words, phrases, negations = entries("words"), entries("phrases"), entries("negations")
        max_words = data.get("max_words", default.max_words if default else None)
        if not isinstance(max_words, int) or isinstance(max_words, bool) or max_words < 1:
            raise ConfigError(f"{where}: max_words must be a positive whole number")
        if not words and not phrases:
            raise ConfigError(f"{where}: at least one affirmative word or phrase is needed")
        return cls(words, phrases, negations, max_words)


def _load(path: Path | None, default: ConfirmationLexicon | None = None) -> ConfirmationLexicon:
    if path is None:
        where = DEFAULT_LEXICON
        text = resources.files(__package__).joinpath(DEFAULT_LEXICON).read_text(encoding="utf-8")
    else:
        where = str(path)
        text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return ConfirmationLexicon.parse(data, where, default)


class ConfirmationLexicons:
    """Each tenant's lexicon, read once from `tenants_dir` (None: every tenant has the default)."""

    def __init__(self, tenants_dir: Path | None) -> None:
        self._dir = Path(tenants_dir) if tenants_dir is not None else None
        self._default = _load(None)
        self._tenants: dict[str, ConfirmationLexicon] = {}
        self._lock = threading.Lock()

    def for_tenant(self, tenant: str) -> ConfirmationLexicon:
        with self._lock:
            if tenant not in self._tenants:
                # A tenant id is a folder name here: nothing that could leave the tenants folder.
                safe = re.fullmatch(r"[A-Za-z0-9][\w.-]*", tenant or "") is not None and ".." not in tenant
                path = self._dir / tenant / LEXICON_FILE if self._dir is not None and safe else None
                self._tenants[tenant] = _load(path, self._default) if path is not None and path.is_file() else self._default
            return self._tenants[tenant]
