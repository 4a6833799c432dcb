"""Personal data out before a text leaves for an external model, back in when the answer returns.

E-mail addresses, IBANs (checked with their mod-97 digits), card numbers (any run of 13-19
digits: a mistyped card number is still private) and phone numbers become numbered placeholders such as `[EMAIL_1]`; the same value always
gets the same placeholder, so the model can still say "we will write to [EMAIL_1]". The vault that
maps placeholders back stays in this process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.I)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d\s().-]{6,}\d(?!\w)")
_PLACEHOLDER = re.compile(r"\[(EMAIL|IBAN|CARD|PHONE)_\d+\]")


def iban_is_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def _is_phone(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    # Dates and amounts have few digits or use separators phones do not ("2025-11-01", "1,000.00").
    return 9 <= len(digits) <= 15 and not re.search(r"\d\.\d{2}(?!\d)", candidate)


@dataclass
class PiiVault:
    """Placeholders handed out so far, and the values they stand for."""

    values: dict[str, str] = field(default_factory=dict)  # placeholder -> original
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, re.sub(r"[\s().-]", "", value).lower())
        if key not in self._by_value:
            count = sum(1 for k in self._by_value if k[0] == kind) + 1
            token = f"[{kind}_{count}]"
            self._by_value[key] = token
            self.values[token] = value
        return self._by_value[key]

    def redact(self, text: str) -> str:
        text = _EMAIL.sub(lambda m: self.placeholder("EMAIL", m.group()), text)
        text = _IBAN.sub(lambda m: self.placeholder("IBAN", m.group()) if iban_is_valid(m.group()) else m.group(), text)
        text = _CARD.sub(lambda m: self.placeholder("CARD", m.group()), text)
        return _PHONE.sub(lambda m: self.placeholder("PHONE", m.group()) if _is_phone(m.group()) else m.group(), text)

    def restore(self, text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self.values.get(m.group(), m.group()), text)
