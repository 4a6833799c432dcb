"""Reading resolved cases from a file: what is accepted, and the line-numbered errors for the rest."""

from __future__ import annotations

import gzip
import json

import pytest

from services.retriever.case_files import CaseFileError, case_from_record, load_cases
from services.retriever.search import InvalidCase, ResolvedCase
from tooling.cli import main
from tooling.round_trip import DEMO_TENANT, resolved_cases_path


def write_lines(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_full_record_and_a_minimal_one():
    full = case_from_record({
        "ticket_id": " T-7 ", "problem_statement": " Card not delivered \n", "resolution_notes": "Re-issued",
        "intent": "card_arrival", "article_ids": ["kb-1", "kb-2"],
    })
    assert full == ResolvedCase("T-7", "Card not delivered", "Re-issued", "card_arrival", ("kb-1", "kb-2"))
    assert case_from_record({"ticket_id": "T-8", "problem_statement": "PIN blocked"}) == ResolvedCase("T-8", "PIN blocked", "")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"problem_statement": "x"}, "needs a ticket_id"),
        ({"ticket_id": "T-1", "problem_statement": "   "}, "T-1 has no problem statement"),
        ({"ticket_id": "T-1", "problem_statement": "x", "resolution": "typo"}, "unknown field"),
        ({"ticket_id": 17, "problem_statement": "x"}, "ticket_id must be a string"),
        ({"ticket_id": "T-1", "problem_statement": "x", "article_ids": "kb-1"}, "article_ids must be a list"),
        (["T-1", "x"], "expected a JSON object"),
    ],
)
def test_unusable_records_say_why(record, message):
    with pytest.raises(InvalidCase, match=message):
        case_from_record(record)


def test_a_bad_line_is_named_and_nothing_is_returned(tmp_path):
    good = {"ticket_id": "T-1", "problem_statement": "Card declined"}
    with pytest.raises(CaseFileError, match=r"cases.jsonl:3: not JSON"):
        load_cases(write_lines(tmp_path / "cases.jsonl", good, "", "{oops"))
    with pytest.raises(CaseFileError, match=r"cases.jsonl:2: case T-2 has no problem statement"):
        load_cases(write_lines(tmp_path / "cases.jsonl", good, {"ticket_id": "T-2"}))
    with pytest.raises(CaseFileError, match="no cases"):
        load_cases(write_lines(tmp_path / "cases.jsonl", ""))


def test_gzipped_files_and_the_shipped_sample(tmp_path):
    packed = tmp_path / "cases.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"ticket_id": "T-1", "problem_statement": "Top-up pending"}) + "\n")
    assert [c.ticket_id for c in load_cases(packed)] == ["T-1"]

    shipped = load_cases(resolved_cases_path(DEMO_TENANT))
    assert len(shipped) == len({c.ticket_id for c in shipped}) >= 30
    assert all(c.resolution_notes and c.intent for c in shipped)


def test_the_command_rejects_a_bad_file_before_touching_weaviate(tmp_path, capsys):
    bad = write_lines(tmp_path / "cases.jsonl", {"ticket_id": "T-1"})
    with pytest.raises(SystemExit, match=r"supportflow cases ingest: .*cases.jsonl:1: case T-1 has no problem statement"):
        main(["cases", "ingest", str(bad), "--tenant", "acme"])
    with pytest.raises(SystemExit, match=r"supportflow cases ingest: .*No such file"):
        main(["cases", "ingest", str(tmp_path / "missing.jsonl"), "--tenant", "acme"])
