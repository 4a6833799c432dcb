"""`supportflow kb ingest|search` functions against the real Weaviate, in the stable output format."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from services.retriever import cli
from services.retriever.components import build_components

pytestmark = pytest.mark.infra


@pytest.fixture
def tenant(settings):
    name = f"cli-{uuid.uuid4().hex[:10]}"
    yield name
    parts = build_components(settings)
    try:
        parts.knowledge.drop_tenant(name)
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
    ]) + "\n", encoding="utf-8")
    out = io.StringIO()
    cli.search(None, queries, tenant, 2, False, settings, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["id"] for line in lines] == ["b", "a", "c"]
    assert [line["results"][0]["article_id"] for line in lines] == ["card-pin", "savings-rate", "wire-fees"]
    for line in lines:
        ids = [r["article_id"] for r in line["results"]]
        assert len(ids) <= 2 and len(ids) == len(set(ids))
