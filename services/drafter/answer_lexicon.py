"""The words the offline drafter's answer checks read, as data: `answer_checks.yaml` beside the
drafter holds the defaults, a tenant's `lexicons/answer-checks.yaml` overrides or extends them, and
a tenant's `lexicons/product-catalogue.yaml` names its products. Pure: reading and checking files.

A malformed file raises AnswerLexiconError naming the file and the key, at start-up
(`TenantAnswerChecks.check_all` reads every tenant's files before the drafter takes a ticket): a
check silently reading half a word list would judge every reply wrongly.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import yaml

DEFAULT_FILE = "answer_checks.yaml"  # shipped beside the drafter
TENANT_FILE = Path("lexicons") / "answer-checks.yaml"  # in a tenant's folder
CATALOGUE_FILE = Path("lexicons") / "product-catalogue.yaml"

# Each check's lists; True marks regular-expression alternatives, False plain lower-case words.
SCHEMA: Mapping[str, Mapping[str, bool]] = {
    "money_direction": {"money": True, "incoming": True, "outgoing": True, "not_money": True},
    "waiting": {"waiting": True, "short_amount": True, "not_ours": True, "arrival": True},
    "how_to": {"too_general": False, "instruction_cues": True},
    "named_product": {"not_names": False},
}
INCLUDE_DEFAULT = "include_default"


class AnswerLexiconError(ValueError):
    """An answer-check lexicon or product catalogue is malformed."""


@dataclass(frozen=True)
class AnswerLexicon:
    """Every list of SCHEMA, by check and key."""

    lists: Mapping[str, Mapping[str, tuple[str, ...]]]

    def entries(self, check: str, key: str) -> tuple[str, ...]:
        return self.lists[check][key]


@dataclass(frozen=True)
class CatalogueProduct:
    name: str
    aliases: tuple[str, ...] = ()


def parse_lexicon(data: object, where: str, default: AnswerLexicon | None = None) -> AnswerLexicon:
    """The lexicon `data` describes. With `default` (a tenant's file), a list the file leaves out is
    the default's, and `include_default: true` adds the file's entries to the default's; without
    one (the shipped file), every list is required."""
    if data is None and default is not None:
        return default
    if not isinstance(data, dict):
        raise AnswerLexiconError(f"{where}: expected a mapping with {', '.join(SCHEMA)}")
    unknown = sorted(set(data) - set(SCHEMA) - {INCLUDE_DEFAULT})
    if unknown:
        raise AnswerLexiconError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    include = data.get(INCLUDE_DEFAULT, False)
    if not isinstance(include, bool) or (include and default is None):
        raise AnswerLexiconError(f"{where}: {INCLUDE_DEFAULT} must be true or false, and only in a tenant's file")
    lists: dict[str, dict[str, tuple[str, ...]]] = {}
    for check, keys in SCHEMA.items():
        section = data.get(check)
        if section is None and default is not None:
            section = {}
        if not isinstance(section, dict):
            raise AnswerLexiconError(f"{where}: {check} must be a mapping with {', '.join(keys)}")
        unknown = sorted(set(section) - set(keys))
        if unknown:
            raise AnswerLexiconError(f"{where}: unknown key(s) {', '.join(f'{check}.{k}' for k in map(str, unknown))}")
        lists[check] = {}
        for key, is_pattern in keys.items():
            name = f"{check}.{key}"
            if key not in section:
                if default is None:
                    raise AnswerLexiconError(f"{where}: {name} is missing")
                lists[check][key] = default.entries(check, key)
                continue
            entries = _entries(section[key], where, name, is_pattern)
            if include and default is not None:
                entries = tuple(dict.fromkeys(default.entries(check, key) + entries))
            if not entries:
                raise AnswerLexiconError(f"{where}: {name} is empty")
            lists[check][key] = entries
    return AnswerLexicon(lists)


def _entries(value: object, where: str, name: str, is_pattern: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(e, str) and e.strip() for e in value):
        raise AnswerLexiconError(f"{where}: {name} must be a list of quoted, non-empty strings")
    if not is_pattern:
        return tuple(" ".join(e.lower().split()) for e in value)
    for entry in value:
        try:
            re.compile(entry)
        except re.error as exc:
            raise AnswerLexiconError(f"{where}: {name}: pattern {entry!r}: {exc}") from exc
    return tuple(value)


def parse_catalogue(data: object, where: str) -> tuple[CatalogueProduct, ...]:
    """The products of a `product-catalogue.yaml`: `products: [{name, aliases, options, source}]`."""
    if not isinstance(data, dict) or not isinstance(data.get("products"), list):
        raise AnswerLexiconError(f"{where}: products must be a list of {{name, aliases, options, source}}")
    products = []
    for index, item in enumerate(data["products"]):
        at = f"products[{index}]"
        if not isinstance(item, dict):
            raise AnswerLexiconError(f"{where}: {at} must be a mapping with name, aliases, options, source")
        unknown = sorted(set(item) - {"name", "aliases", "options", "source"})
        if unknown:
            raise AnswerLexiconError(f"{where}: {at}: unknown key(s) {', '.join(map(str, unknown))}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise AnswerLexiconError(f"{where}: {at}.name must be a non-empty string")
        for key in ("aliases", "options"):
            value = item.get(key) or []
            if not isinstance(value, list) or not all(isinstance(e, str) and e.strip() for e in value):
                raise AnswerLexiconError(f"{where}: {at}.{key} must be a list of non-empty strings")
        products.append(CatalogueProduct(" ".join(name.split()), tuple(" ".join(a.split()) for a in item.get("aliases") or [])))
    return tuple(products)


def read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AnswerLexiconError(f"{path}: {exc}") from exc


@functools.cache
def default_lexicon() -> AnswerLexicon:
    text = resources.files(__package__).joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    where = f"services/drafter/{DEFAULT_FILE}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AnswerLexiconError(f"{where}: {exc}") from exc
    return parse_lexicon(data, where)
