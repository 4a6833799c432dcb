"""Reply templates: per-tenant overrides, per-channel values, validation, and no policy inside."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.drafter.policy_ledger import quantities
from services.drafter.templates import DEFAULT_TEMPLATES_PATH, TemplateBook, TemplateError


def test_tenant_overrides_merge_over_the_default() -> None:
    book = TemplateBook.load()
    rho, other = book.for_reply("rho-bank", "email"), book.for_reply("acme", "email")
    assert rho.closing.endswith("Rho-Bank Support")
    assert other.closing.endswith("Customer Support")
    assert rho.greeting == other.greeting == "Hello,"
    assert rho.identifier_name("transaction_id") == "the transaction ID"
    assert rho.identifier_name("iban") == "the iban"


def test_chat_is_much_shorter_than_email() -> None:
    book = TemplateBook.load()
    chat, email = book.for_reply("rho-bank", "chat"), book.for_reply("rho-bank", "email")
    assert chat.max_chars * 2 < email.max_chars
    assert chat.max_sentences < email.max_sentences
    assert not chat.bullets and email.bullets
    assert book.for_reply("rho-bank", "web_form").max_chars == 900  # the channel default


def test_shipped_templates_state_no_policy() -> None:
    """A number in a template would be an unbacked claim in every draft."""
    document = yaml.safe_load(DEFAULT_TEMPLATES_PATH.read_text())

    def strings(node: object) -> list[str]:
        if isinstance(node, dict):
            return [s for value in node.values() for s in strings(value)]
        return [node] if isinstance(node, str) else []

    offending = [s for s in strings(document) if quantities(s)]
    assert offending == []


def test_a_broken_file_fails_at_load_time(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text("default:\n  greeting: Hi\n")
    with pytest.raises(TemplateError, match="lacks"):
        TemplateBook.load(path)
    document = yaml.safe_load(DEFAULT_TEMPLATES_PATH.read_text())
    document["tenants"]["bad"] = {"max_chars": {"default": "lots"}}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(TemplateError, match="bad"):
        TemplateBook.load(path)
