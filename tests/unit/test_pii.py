"""PII redaction before an external model call, and restoration after."""

from __future__ import annotations

from conversation.pii import PiiVault, iban_is_valid


def test_personal_data_is_replaced_consistently_and_restored() -> None:
    vault = PiiVault()
    text = (
        "Mail jane.doe@example.com or call +44 20 7946 0958. Card 4111 1111 1111 1111, "
        "IBAN GB82 WEST 1234 5698 7654 32. Again: jane.doe@example.com"
    )
    redacted = vault.redact(text)
    for secret in ("jane.doe", "7946", "4111", "GB82"):
        assert secret not in redacted
    assert redacted.count("[EMAIL_1]") == 2
    assert {"[PHONE_1]", "[CARD_1]", "[IBAN_1]"} <= set(vault.values)
    assert vault.restore(redacted) == text


def test_amounts_dates_and_invalid_ibans_are_left_alone() -> None:
    vault = PiiVault()
    text = "I paid $1,000.00 on 2025-11-01 for order 12345 at 10:30."
    assert vault.redact(text) == text
    assert not iban_is_valid("GB00 WEST 1234 5698 7654 32")
    # Not an IBAN, but its long run of digits is still treated as private.
    assert "[IBAN_" not in vault.redact("ref GB00 WEST 1234 5698 7654 32")


def test_unknown_placeholders_survive_restoration() -> None:
    assert PiiVault().restore("Write to [EMAIL_3].") == "Write to [EMAIL_3]."
