"""What the KPI panel needs from a tenant's own data (`<tenants_dir>/<tenant>/`), validated on load.

- `kpi-baseline.yaml`: the tenant's pre-deployment figures, which the panel's deltas are taken
  against. Without the file the tenant has no baseline: its deltas are unknown (absent, and the row
  says `baseline_unknown` = 1), never invented.

      csat:                   # 0..100, per latency; `default` for every archetype, `archetypes` per archetype
        default: {at_resolution: 80, delayed: 78, model_scored: 80}
        archetypes:
          account_specific: {at_resolution: 76}
      handle_time_seconds:    # mean handle time before automation: `bot` (automated answers), `escalated`
        default: {bot: 60, escalated: 1500}
        archetypes: {}
      source: "where the figures come from"   # optional, shown in the weekly report

- `repetition-lexicon.yaml`: how the tenant's customers say that they already explained their
  problem (customer_repetition_rate). Without one, the lexicon shipped beside the learner
  (`repetition_lexicon.yaml`) applies; `include_default: true` adds the tenant's entries to it.

      phrases: ["already told you", ...]   # matched in the reply's normalized text (lower case, one space)
      patterns: ["already (?:explained|said)", ...]   # regular expressions over the same text
      include_default: false

A malformed file stops the learner at start-up (`TenantData.check_all`) with `TenantDataError` naming
the file and the field: a baseline that is silently half-read would give wrong deltas.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping

import yaml

from services.learner.config import CSAT_LATENCIES, archetype_name, parse_archetype

BASELINE_FILE = "kpi-baseline.yaml"
LEXICON_FILE = "repetition-lexicon.yaml"
DEFAULT_LEXICON = "repetition_lexicon.yaml"  # shipped beside the learner
HANDLE_TIMES = ("bot", "escalated")


class TenantDataError(ValueError):
    """A tenant data file is malformed."""


@dataclass(frozen=True)
class KpiBaseline:
    """A tenant's pre-deployment figures."""

    csat_default: Mapping[int, float] = field(default_factory=dict)  # latency -> points
    csat_by_archetype: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    handle_default: Mapping[str, float] = field(default_factory=dict)  # "bot" | "escalated" -> seconds
    handle_by_archetype: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    source: str = ""

    def csat(self, archetype: str, latency: int) -> float | None:
        return self.csat_by_archetype.get(archetype, {}).get(latency, self.csat_default.get(latency))

    def handle_time(self, archetype: str, kind: str) -> float | None:
        return self.handle_by_archetype.get(archetype, {}).get(kind, self.handle_default.get(kind))


def _normalize(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


@dataclass(frozen=True)
class RepetitionLexicon:
    phrases: tuple[str, ...]
    patterns: tuple[re.Pattern, ...]

    def matches(self, text: str) -> bool:
        normalized = _normalize(text)
        return any(p in normalized for p in self.phrases) or any(p.search(normalized) for p in self.patterns)


def parse_baseline(data: object, origin: str) -> KpiBaseline:
    if not isinstance(data, dict):
        raise TenantDataError(f"{origin}: expected a mapping with `csat` and `handle_time_seconds`")
    unknown = set(data) - {"csat", "handle_time_seconds", "source"}
    if unknown:
        raise TenantDataError(f"{origin}: unknown keys {sorted(unknown)}")
    csat = data.get("csat") or {}
    handle = data.get("handle_time_seconds") or {}
    for name, block in (("csat", csat), ("handle_time_seconds", handle)):
        if not isinstance(block, dict) or set(block) - {"default", "archetypes"}:
            raise TenantDataError(f"{origin}: `{name}` takes `default` and `archetypes`")

    def csat_map(values: object, where: str) -> dict[int, float]:
        return {CSAT_LATENCIES[k]: _number(v, f"{where}.{k}", 0, 100, origin)
                for k, v in _mapping(values, where, set(CSAT_LATENCIES), origin).items()}

    def handle_map(values: object, where: str) -> dict[str, float]:
        return {k: _number(v, f"{where}.{k}", 0, math.inf, origin, exclusive_low=True)
                for k, v in _mapping(values, where, set(HANDLE_TIMES), origin).items()}

    return KpiBaseline(
        csat_default=csat_map(csat.get("default") or {}, "csat.default"),
        csat_by_archetype={_archetype(a, origin): csat_map(v, f"csat.archetypes.{a}")
                           for a, v in _mapping(csat.get("archetypes") or {}, "csat.archetypes", None, origin).items()},
        handle_default=handle_map(handle.get("default") or {}, "handle_time_seconds.default"),
        handle_by_archetype={_archetype(a, origin): handle_map(v, f"handle_time_seconds.archetypes.{a}")
                             for a, v in _mapping(handle.get("archetypes") or {}, "handle_time_seconds.archetypes",
                                                  None, origin).items()},
        source=str(data.get("source") or ""),
    )


def parse_lexicon(data: object, origin: str, default: RepetitionLexicon | None = None) -> RepetitionLexicon:
    if not isinstance(data, dict) or set(data) - {"phrases", "patterns", "include_default"}:
        raise TenantDataError(f"{origin}: expected a mapping with `phrases`, `patterns`, `include_default`")
    phrases, patterns = data.get("phrases") or [], data.get("patterns") or []
    if not isinstance(phrases, list) or not all(isinstance(p, str) and p.strip() for p in phrases):
        raise TenantDataError(f"{origin}: `phrases` must be a list of non-empty strings")
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p.strip() for p in patterns):
        raise TenantDataError(f"{origin}: `patterns` must be a list of non-empty strings")
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise TenantDataError(f"{origin}: pattern {pattern!r}: {exc}") from exc
    lexicon = RepetitionLexicon(tuple(_normalize(p) for p in phrases), tuple(compiled))
    if data.get("include_default") and default is not None:
        lexicon = RepetitionLexicon(default.phrases + lexicon.phrases, default.patterns + lexicon.patterns)
    if not lexicon.phrases and not lexicon.patterns:
        raise TenantDataError(f"{origin}: the lexicon is empty")
    return lexicon


def default_lexicon() -> RepetitionLexicon:
    text = resources.files(__package__).joinpath(DEFAULT_LEXICON).read_text(encoding="utf-8")
    return parse_lexicon(yaml.safe_load(text), f"services/learner/{DEFAULT_LEXICON}")


class TenantData:
    """Each tenant's baseline and lexicon, read once per tenant from `tenants_dir` (None: no tenant
    has data; every tenant's deltas are unknown and the default lexicon applies)."""

    def __init__(self, tenants_dir: Path | None) -> None:
        self._dir = Path(tenants_dir) if tenants_dir is not None else None
        self._default_lexicon = default_lexicon()
        self._baselines: dict[str, KpiBaseline | None] = {}
        self._lexicons: dict[str, RepetitionLexicon] = {}
        self._lock = threading.Lock()

    def baseline(self, tenant: str) -> KpiBaseline | None:
        with self._lock:
            if tenant not in self._baselines:
                path = self._file(tenant, BASELINE_FILE)
                self._baselines[tenant] = parse_baseline(_read(path), str(path)) if path else None
            return self._baselines[tenant]

    def lexicon(self, tenant: str) -> RepetitionLexicon:
        with self._lock:
            if tenant not in self._lexicons:
                path = self._file(tenant, LEXICON_FILE)
                self._lexicons[tenant] = (parse_lexicon(_read(path), str(path), self._default_lexicon) if path
                                          else self._default_lexicon)
            return self._lexicons[tenant]

    def check_all(self) -> list[str]:
        """Read every tenant's files now (at start-up), so a malformed one stops the learner with its
        path and field before any event is handled; the tenants that have a baseline."""
        if self._dir is None or not self._dir.is_dir():
            return []
        tenants = sorted(p.name for p in self._dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        for tenant in tenants:
            self.lexicon(tenant)
        return [tenant for tenant in tenants if self.baseline(tenant) is not None]

    def csat_baseline(self, tenant: str, archetype: str, latency: int) -> float | None:
        baseline = self.baseline(tenant)
        return baseline.csat(archetype, latency) if baseline is not None else None

    def said_already(self, tenant: str, text: str) -> bool:
        return self.lexicon(tenant).matches(text)

    def _file(self, tenant: str, name: str) -> Path | None:
        if self._dir is None or not tenant or "/" in tenant or tenant.startswith("."):
            return None
        path = self._dir / tenant / name
        return path if path.is_file() else None


def _read(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TenantDataError(f"{path}: not valid YAML: {exc}") from exc


def _mapping(values: object, where: str, allowed: set[str] | None, origin: str) -> dict[str, object]:
    if not isinstance(values, dict):
        raise TenantDataError(f"{origin}: `{where}` must be a mapping")
    if allowed is not None and set(map(str, values)) - allowed:
        raise TenantDataError(f"{origin}: `{where}` has unknown keys {sorted(set(map(str, values)) - allowed)}; "
                              f"expected some of {sorted(allowed)}")
    return {str(k): v for k, v in values.items()}


def _number(value: object, where: str, low: float, high: float, origin: str, exclusive_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TenantDataError(f"{origin}: `{where}` must be a number, got {value!r}")
    if value < low or value > high or (exclusive_low and value == low):
        raise TenantDataError(f"{origin}: `{where}` = {value} is outside {'(' if exclusive_low else '['}{low}, {high}]")
    return float(value)


def _archetype(name: str, origin: str) -> str:
    try:
        return archetype_name(parse_archetype(name))
    except ValueError as exc:
        raise TenantDataError(f"{origin}: {exc}") from exc

