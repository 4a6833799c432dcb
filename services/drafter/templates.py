"""Reply wording per tenant and channel, from a YAML file (the default one ships in the package)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TEMPLATES_PATH = Path(__file__).with_name("templates.yaml")

_REQUIRED = (
    "greeting", "closing", "lead_in", "bullets", "show_sources", "sources_heading", "max_chars",
    "max_sentences", "holding", "holding_next_step", "missing_identifiers", "follow_up_question",
    "next_step_missing", "next_step", "stale", "account_specific", "low_confidence", "identifier_names",
    "evidence_lead_in", "evidence_partial",
)


class TemplateError(ValueError):
    """The templates file is unusable; raised when it is loaded, never while drafting."""


@dataclass(frozen=True)
class ReplyTemplate:
    """The wording for one tenant on one channel."""

    greeting: str
    closing: str
    lead_in: str
    bullets: bool
    show_sources: bool
    sources_heading: str
    max_chars: int
    max_sentences: int
    holding: str
    holding_next_step: str
    missing_identifiers: str
    follow_up_question: str
    next_step_missing: str
    next_step: str
    stale: str
    account_specific: str
    low_confidence: str
    identifier_names: dict[str, str]
    evidence_lead_in: str
    evidence_partial: str

    def identifier_name(self, kind: str) -> str:
        return self.identifier_names.get(kind) or "the " + kind.replace("_", " ")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _for_channel(value: Any, channel: str) -> Any:
    if isinstance(value, dict) and "default" in value:
        return value.get(channel, value["default"])
    return value


class TemplateBook:
    """All tenants' templates; `for_reply(tenant, channel)` resolves one."""

    def __init__(self, document: dict[str, Any]) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("default"), dict):
            raise TemplateError("a templates file needs a `default` block")
        missing = [key for key in _REQUIRED if key not in document["default"]]
        if missing:
            raise TemplateError(f"the default template lacks {', '.join(missing)}")
        tenants = document.get("tenants") or {}
        if not isinstance(tenants, dict):
            raise TemplateError("`tenants` must map tenant ids to template blocks")
        self._default = document["default"]
        self._tenants = {str(t): _merge(self._default, block or {}) for t, block in tenants.items()}
        for tenant in self._tenants:
            for channel in ("email", "chat", "default"):
                self.for_reply(tenant, channel)  # fail at load time, not on the first ticket

    @classmethod
    def load(cls, path: Path | None = None) -> "TemplateBook":
        path = path or DEFAULT_TEMPLATES_PATH
        try:
            return cls(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            raise TemplateError(f"cannot read templates {path}: {exc}") from exc

    def for_reply(self, tenant: str, channel: str) -> ReplyTemplate:
        block = self._tenants.get(tenant, self._default)
        values = {key: _for_channel(block[key], channel) for key in _REQUIRED}
        try:
            return ReplyTemplate(
                **{k: str(v) for k, v in values.items() if k not in {"bullets", "show_sources", "max_chars", "max_sentences", "identifier_names"}},
                bullets=bool(values["bullets"]),
                show_sources=bool(values["show_sources"]),
                max_chars=int(values["max_chars"]),
                max_sentences=int(values["max_sentences"]),
                identifier_names={str(k): str(v) for k, v in dict(values["identifier_names"]).items()},
            )
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"template for tenant {tenant!r}, channel {channel!r}: {exc}") from exc


def join_items(items: list[str], conjunction: str = "and") -> str:
    """'a', 'a and b', 'a, b and c' (with conjunction "or": 'a, b or c')."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]
