"""What the classifier knows about each intent beyond its name: its archetype (archetypes.yaml) and
the identifiers it needs before anyone can act on it (required_identifiers.yaml).

The taxonomy itself is data (the intent model learns it from a labeled CSV); these two files
describe the Banking77 taxonomy the demo model is trained on. An intent they do not list gets the
default archetype and needs no identifiers, so a model trained on another taxonomy still works.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.classifier.intake import IDENTIFIER_KINDS

HERE = Path(__file__).resolve().parent
DEFAULT_ARCHETYPES_PATH = HERE / "archetypes.yaml"
DEFAULT_REQUIRED_IDENTIFIERS_PATH = HERE / "required_identifiers.yaml"

ARCHETYPES: dict[str, int] = {
    "repetitive": tk.ARCHETYPE_REPETITIVE,
    "faq_bounded": tk.ARCHETYPE_FAQ_BOUNDED,
    "account_specific": tk.ARCHETYPE_ACCOUNT_SPECIFIC,
}


def archetype_name(archetype: int) -> str:
    """"repetitive", "faq_bounded", "account_specific" (or "unspecified"), as in the YAML files."""
    return tk.Archetype.Name(archetype).removeprefix("ARCHETYPE_").lower()


class CatalogError(ValueError):
    """An intent catalog file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class IntentCatalog:
    archetypes: Mapping[str, int]
    default_archetype: int
    # intent -> requirement groups; a group is met by any one of its identifier kinds
    required_identifiers: Mapping[str, tuple[tuple[str, ...], ...]]

    def archetype(self, intent: str) -> int:
        return self.archetypes.get(intent, self.default_archetype)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    return document


def _archetype(path: Path, where: str, name: object) -> int:
    if name not in ARCHETYPES:
        raise CatalogError(f"{path}: {where}: unknown archetype {name!r}; expected one of {', '.join(ARCHETYPES)}")
    return ARCHETYPES[str(name)]


def load_intent_catalog(
    archetypes_path: Path = DEFAULT_ARCHETYPES_PATH,
    required_identifiers_path: Path = DEFAULT_REQUIRED_IDENTIFIERS_PATH,
) -> IntentCatalog:
    archetypes_doc = _read_yaml(archetypes_path)
    intents = archetypes_doc.get("intents") or {}
    if not isinstance(intents, dict):
        raise CatalogError(f"{archetypes_path}: 'intents' must map intent names to archetypes")
    archetypes = {str(intent): _archetype(archetypes_path, str(intent), name) for intent, name in intents.items()}
    default = _archetype(archetypes_path, "default", archetypes_doc.get("default"))

    identifiers_doc = _read_yaml(required_identifiers_path)
    required: dict[str, tuple[tuple[str, ...], ...]] = {}
    for intent, groups in (identifiers_doc.get("intents") or {}).items():
        if not isinstance(groups, list) or not all(isinstance(g, list) and g for g in groups):
            raise CatalogError(f"{required_identifiers_path}: {intent}: expected a list of non-empty kind lists")
        for group in groups:
            unknown = [kind for kind in group if kind not in IDENTIFIER_KINDS]
            if unknown:
                raise CatalogError(
                    f"{required_identifiers_path}: {intent}: unknown identifier kinds {unknown}; "
                    f"expected {', '.join(IDENTIFIER_KINDS)}"
                )
        required[str(intent)] = tuple(tuple(str(kind) for kind in group) for group in groups)
    return IntentCatalog(archetypes=archetypes, default_archetype=default, required_identifiers=required)


@functools.cache
def default_catalog() -> IntentCatalog:
    """The catalog shipped with the classifier, read once per process."""
    return load_intent_catalog()
