"""Resolved cases from a file: how a team seeds similar-case search with its helpdesk history.

JSON lines (optionally gzipped), one resolved ticket per line:

    {"ticket_id": "T-1042", "problem_statement": "...", "resolution_notes": "...",
     "intent": "card_arrival", "article_ids": ["kb-17"]}

`ticket_id` and `problem_statement` are required; the rest may be left out. After import, cases
resolved in the pipeline keep arriving as `tickets.resolved` events and land in the same index
(a ticket imported twice, or imported and then resolved again, keeps one entry).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from services.retriever.search import InvalidCase, ResolvedCase, resolved_case

_FIELDS = {"ticket_id", "problem_statement", "resolution_notes", "intent", "article_ids"}


class CaseFileError(ValueError):
    """A cases file that cannot be imported as a whole; says which line and why."""


def case_from_record(record: object) -> ResolvedCase:
    if not isinstance(record, dict):
        raise InvalidCase("expected a JSON object")
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise InvalidCase(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_FIELDS))}")
    text_fields = {name: record.get(name, "") for name in sorted(_FIELDS - {"article_ids"})}
    for name, value in text_fields.items():
        if not isinstance(value, str):
            raise InvalidCase(f"{name} must be a string")
    article_ids = record.get("article_ids", [])
    if not isinstance(article_ids, list) or not all(isinstance(a, str) for a in article_ids):
        raise InvalidCase("article_ids must be a list of strings")
    return resolved_case(article_ids=article_ids, **text_fields)


def load_cases(path: Path | str) -> list[ResolvedCase]:
    """Every case in the file, or a CaseFileError naming the first bad line (nothing is half-read)."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    cases: list[ResolvedCase] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        numbered = ((number, line) for number, line in enumerate(handle, start=1) if line.strip())
        for number, line in numbered:
            try:
                cases.append(case_from_record(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CaseFileError(f"{path}:{number}: not JSON: {exc}") from exc
            except InvalidCase as exc:
                raise CaseFileError(f"{path}:{number}: {exc}") from exc
    if not cases:
        raise CaseFileError(f"{path}: no cases")
    return cases
