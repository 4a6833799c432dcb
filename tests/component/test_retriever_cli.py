"""`supportflow kb ingest|search` functions against the real Weaviate, in the stable output format."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from tooling.commands import retriever as cli
from services.retriever.case_files import CaseFileError
from services.retriever.components import build_components
from services.retriever.search import DEFAULT_CASE_MIN_SIMILARITY
from tooling.round_trip import DEMO_TENANT, resolved_cases_path

pytestmark = pytest.mark.infra


@pytest.fixture
def tenant(settings):
    name = f"cli-{uuid.uuid4().hex[:10]}"
    yield name
    parts = build_components(settings)
    try:
        parts.knowledge.drop_tenant(name)
        parts.cases.drop_tenant(name)
    finally:
        parts.close()


def write_kb(folder):
    articles = {
        "wire-fees": ("International wire fees", "## Outgoing\nAn outgoing international wire costs $35."),
        "card-pin": ("Changing your PIN", "## In the app\nOpen Cards > PIN to change your PIN."),
        "savings-rate": ("Savings interest", "## Rates\nThe Gold savings account pays 4.1% APY."),
    }
    for article_id, (title, body) in articles.items():
        (folder / f"{article_id}.md").write_text(f"---\ntitle: {title}\nowner: kb-team\n---\n{body}\n", encoding="utf-8")


def test_ingest_a_markdown_folder_then_search_as_json(settings, tenant, tmp_path):
    write_kb(tmp_path)
    report = cli.ingest(tmp_path, tenant, settings)
    assert report["articles"] == 3 and report["chunks"] == 3 and report["tenant"] == tenant
    assert cli.ingest(tmp_path, tenant, settings)["chunks"] == 3  # idempotent

    out = io.StringIO()
    cli.search("how much does a wire abroad cost", None, tenant, 2, True, settings, out)
    payload = json.loads(out.getvalue())
    assert [r["article_id"] for r in payload["results"]][0] == "wire-fees"
    assert len(payload["results"]) == 2
    assert set(payload["results"][0]) == {"article_id", "title", "score", "snippet"}
    assert "$35" in payload["results"][0]["snippet"]


def test_queries_file_gives_one_line_per_query_in_order(settings, tenant, tmp_path):
    write_kb(tmp_path)
    cli.ingest(tmp_path, tenant, settings)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"id": "b", "query": "change my PIN"},
        {"id": "a", "query": "savings account interest rate"},
        {"id": "c", "query": "wire fee"},
    ]) + "\nnot json\n" + json.dumps({"id": "d", "query": " "}) + "\n" + json.dumps({"id": "e"}) + "\n"
      + json.dumps({"id": "f", "query": "wire fee"}) + "\n", encoding="utf-8")
    out = io.StringIO()
    cli.search(None, queries, tenant, 2, False, settings, out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    # A bad line gets its own line with the reason and no results, and the run goes on.
    assert [r["id"] for r in records] == ["b", "a", "c", None, "d", "e", "f"]
    assert [r.get("error", "") for r in records[3:6]] == [
        "line 4: not JSON: Expecting value: line 1 column 1 (char 0)", 'line 5: no "query" text', 'line 6: no "query" text',
    ]
    assert all(r["results"] == [] for r in records[3:6])
    lines = [r for r in records if "error" not in r]
    assert [line["results"][0]["article_id"] for line in lines] == ["card-pin", "savings-rate", "wire-fees", "wire-fees"]
    for line in lines:
        ids = [r["article_id"] for r in line["results"]]
        assert len(ids) <= 2 and len(ids) == len(set(ids))


def test_resolved_cases_import_then_search_with_their_resolutions(settings, tenant):
    cases_file = resolved_cases_path(DEMO_TENANT)
    shipped = sum(1 for line in cases_file.read_text(encoding="utf-8").splitlines() if line.strip())
    assert cli.ingest_cases(cases_file, tenant, settings)["cases"] == shipped
    assert cli.ingest_cases(cases_file, tenant, settings)["cases"] == shipped
    assert cli.indexed_cases(settings, tenant) == shipped  # imported twice, stored once

    out = io.StringIO()
    cli.search_cases("I ordered a card two weeks ago and it still has not come", tenant, 2, True, settings, out)
    rows = json.loads(out.getvalue())["cases"]
    assert len(rows) == 2
    assert rows[0]["intent"] == "card_arrival"
    assert "re-issued" in rows[0]["resolution_notes"].lower()
    assert all(row["similarity"] >= DEFAULT_CASE_MIN_SIMILARITY for row in rows)

    unlike = io.StringIO()
    cli.search_cases("The weather in Lisbon is sunny and warm today", tenant, 3, True, settings, unlike)
    assert json.loads(unlike.getvalue())["cases"] == []  # nearest cases exist, none is alike

    other = io.StringIO()
    cli.search_cases("my card has not arrived", f"{tenant}-other", 3, True, settings, other)
    assert json.loads(other.getvalue())["cases"] == []  # another tenant sees none of them


def test_a_cases_file_with_a_bad_line_indexes_nothing(settings, tenant, tmp_path):
    cases_file = tmp_path / "cases.jsonl"
    cases_file.write_text(
        json.dumps({"ticket_id": "T-1", "problem_statement": "Card declined abroad", "resolution_notes": "Unfroze it"})
        + "\n" + json.dumps({"ticket_id": "T-2", "resolution_notes": "no problem statement"}) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(CaseFileError, match=r"cases.jsonl:2: case T-2 has no problem statement"):
        cli.ingest_cases(cases_file, tenant, settings)
    assert cli.indexed_cases(settings, tenant) == 0
