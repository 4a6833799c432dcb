"""Parsing (unknown metadata kept unknown), the tenant's knowledge policy and section-aware chunking
(services/retriever/articles.py)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

import pytest

from services.retriever.articles import (
    ArticleError,
    KnowledgeArticle,
    KnowledgePolicy,
    KnowledgePolicyError,
    TenantKnowledgePolicies,
    article_from_markdown,
    article_from_record,
    chunk_article,
    load_articles,
)

NOW = datetime(2031, 5, 17, tzinfo=timezone.utc)


def test_record_with_metadata_keeps_it():
    article = article_from_record({
        "id": "a1", "title": "Fees", "content": "## Wire\nThe fee is $25.", "source": "internal_policy",
        "owner": "cards", "updated_at": "2025-03-01", "review_by": "2025-09-01T00:00:00Z",
        "intents": ["transfer_fee_charged"], "locale": "de", "is_policy": "true", "url": "https://x/a1",
    })
    assert article.source == "internal_policy"
    assert article.updated_at == datetime(2025, 3, 1, tzinfo=timezone.utc)
    assert article.review_by == datetime(2025, 9, 1, tzinfo=timezone.utc)
    assert article.intents == ("transfer_fee_charged",)
    assert article.locale == "de" and article.is_policy is True and article.url == "https://x/a1"


def test_record_defaults_locale_and_source():
    article = article_from_record({"id": "a1", "title": "T", "content": "body"})
    assert article.locale == "en" and article.source == "help_center" and article.is_policy is None


@pytest.mark.parametrize("record", [{"title": "T", "content": "x"}, {"id": "a"}, {"id": "a", "updated_at": "soon", "content": "x"}])
def test_bad_records_are_refused(record):
    with pytest.raises(ArticleError):
        article_from_record(record)


def test_markdown_front_matter_and_title_from_heading():
    text = "---\nowner: payments\nintents: [card_arrival, card_delivery_estimate]\nreview_by: 2026-02-01\n---\n# When will my card arrive?\n\nUsually 5 days.\n"
    article = article_from_markdown(text, "card-arrival")
    assert article.article_id == "card-arrival"
    assert article.title == "When will my card arrive?"
    assert article.content.strip() == "Usually 5 days."
    assert article.owner == "payments"
    assert article.intents == ("card_arrival", "card_delivery_estimate")
    assert article.review_by == datetime(2026, 2, 1, tzinfo=timezone.utc)


def test_markdown_with_bad_front_matter_is_refused():
    with pytest.raises(ArticleError):
        article_from_markdown("---\n: [unclosed\n---\nbody", "x")


def test_a_bare_record_gets_no_invented_metadata(tmp_path):
    path = tmp_path / "kb.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": "doc_credit_cards_x_001", "title": "Internal: Card limits", "content": "The fee is $5."}) + "\n")
        f.write(json.dumps({"id": "own", "title": "Mine", "content": "c", "source": "faq", "is_policy": False}) + "\n")
    bare, own = load_articles(path)
    assert (bare.url, bare.owner, bare.updated_at, bare.review_by, bare.is_policy) == ("", "", None, None, None)
    assert bare.source == "help_center"  # the default, not a guess from the title
    assert own.source == "faq" and own.is_policy is False  # stated, so known


def test_load_markdown_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "one.md").write_text("# One\ntext one")
    (tmp_path / "two.md").write_text("---\ntitle: Two\n---\ntext two")
    assert sorted(a.article_id for a in load_articles(tmp_path)) == ["one", "two"]


def test_the_default_knowledge_policy_serves_undated_articles_and_backs_no_figure_with_unmarked_ones():
    policy = KnowledgePolicy()
    assert not policy.stale(None, NOW)
    assert policy.stale(datetime(2031, 1, 1, tzinfo=timezone.utc), NOW) and not policy.stale(datetime(2032, 1, 1, tzinfo=timezone.utc), NOW)
    assert policy.canonical(None) is False and policy.canonical(True) is True


def test_a_tenant_decides_what_unknown_metadata_means(tmp_path):
    (tmp_path / "careful").mkdir()
    (tmp_path / "careful" / "knowledge.yaml").write_text("unknown_freshness: hold\nunmarked_policy: canonical\n")
    policies = TenantKnowledgePolicies(tmp_path)
    careful, other = policies("careful"), policies("other")
    assert careful.stale(None, NOW) and careful.canonical(None) and careful.canonical(False) is False
    assert other == KnowledgePolicy()  # no file: the defaults
    assert TenantKnowledgePolicies(None)("careful") == KnowledgePolicy()


@pytest.mark.parametrize("text, error", [
    ("unknown_freshness: maybe\n", "unknown_freshness is 'maybe'"),
    ("unmarked_policy: always\n", "unmarked_policy is 'always'"),
    ("review: hold\n", "unknown keys ['review']"),
    ("- hold\n", "expected a mapping"),
])
def test_a_malformed_knowledge_policy_is_refused_naming_the_file_and_field(tmp_path, text, error):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "knowledge.yaml").write_text(text)
    with pytest.raises(KnowledgePolicyError, match="knowledge.yaml") as raised:
        TenantKnowledgePolicies(tmp_path)("t")
    assert error in str(raised.value)


def _article(content: str, title: str = "Card fees") -> KnowledgeArticle:
    return KnowledgeArticle("a1", title, content)


def test_chunks_follow_headings_and_keep_title_and_section():
    body = "x" * 300
    chunks = chunk_article(_article(f"## Fees\n{body}\n\n## Limits\n### Daily\n{body}\n"))
    assert [c.section for c in chunks] == ["Fees", "Limits / Daily"]
    assert all(c.search_text.startswith(f"Card fees: {c.section}\n") for c in chunks)
    assert [c.chunk_id for c in chunks] == ["a1#0", "a1#1"]


def test_tiny_sections_are_merged_with_their_heading_kept():
    chunks = chunk_article(_article("## Fees\nThe fee is $5.\n\n## Limits\nUp to $500 a day.\n"))
    assert len(chunks) == 1
    assert chunks[0].section == "Fees; Limits"
    assert "Limits:\nUp to $500 a day." in chunks[0].text


def test_huge_sections_split_on_paragraphs_under_the_cap():
    paragraphs = [f"Paragraph {i} " + "word " * 40 for i in range(12)]
    chunks = chunk_article(_article("## Terms\n" + "\n\n".join(paragraphs)), max_chars=600, min_chars=100)
    assert len(chunks) > 1
    assert all(len(c.text) <= 600 for c in chunks)
    assert all(c.section == "Terms" for c in chunks)
    assert all(c.text.startswith("Paragraph") for c in chunks)  # cut between paragraphs, not inside
    assert " ".join(c.text for c in chunks).split() == "\n\n".join(paragraphs).split()  # nothing lost


def test_a_single_overlong_line_is_hard_cut():
    chunks = chunk_article(_article("## Blob\n" + "a" * 2500), max_chars=1000, min_chars=100)
    assert [len(c.text) for c in chunks] == [1000, 1000, 500]


def test_headings_inside_code_fences_are_not_sections():
    chunks = chunk_article(_article("## Real\n```\n# not a heading\n```\n" + "y" * 300))
    assert [c.section for c in chunks] == ["Real"]


def test_title_only_article_still_gets_a_chunk():
    chunks = chunk_article(_article("", title="Holiday opening hours"))
    assert len(chunks) == 1 and chunks[0].text == "Holiday opening hours"


def test_kb_ingest_rejects_a_bad_file_with_where_and_why(tmp_path):
    from tooling.cli import main

    bad = tmp_path / "kb.jsonl"
    bad.write_text('{"id": "a1", "title": "Fees", "content": "Wires cost $5."}\n{not json\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"supportflow kb ingest: .*kb.jsonl:2: not JSON"):
        main(["kb", "ingest", str(bad), "--tenant", "acme"])
