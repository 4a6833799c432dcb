"""An extractive summary of what a customer wrote, shared by the escalation packet (the escalator)
and the knowledge loop (the learner): the subject when it adds something, the first sentences of
the message without greetings and sign-offs, and the latest earlier customer turn."""

from __future__ import annotations

import re

from supportflow.contracts.v1 import ticket_pb2 as tk

MAX_SUMMARY_CHARS = 600
# Oversized tickets (pasted logs, repeated text) are summarised from their beginning only.
MAX_TEXT_SCANNED = 8000

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_GREETING = re.compile(r"^(hi|hello|hey|dear|good (morning|afternoon|evening))\b[^.!?]{0,40}[,!.]?$", re.I)
_SIGN_OFF = re.compile(
    r"^(thanks|thank you|many thanks|cheers|regards|best|kind regards|sent from my)\b", re.I
)


def sentences(text: str) -> list[str]:
    """The sentences (or lines) of the first MAX_TEXT_SCANNED characters of `text`."""
    return [s.strip() for s in _SENTENCE_END.split(text[:MAX_TEXT_SCANNED]) if s and s.strip()]


def content_sentences(text: str) -> list[str]:
    """Sentences without greetings, sign-offs or what follows a sign-off (names, signatures)."""
    kept = []
    for sentence in sentences(text):
        if _SIGN_OFF.match(sentence):
            break
        if _GREETING.match(sentence):
            continue
        kept.append(sentence)
    return kept


def clip(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def conversation_summary(ticket: tk.Ticket) -> str:
    """Extractive: the subject when it adds something, the first sentences of the message, and
    the latest earlier customer turn, in that order, within MAX_SUMMARY_CHARS."""
    body = content_sentences(ticket.body)
    parts: list[str] = []
    subject = " ".join(ticket.subject.split())
    if len(subject.split()) >= 3 and subject.lower() not in ticket.body[:MAX_TEXT_SCANNED].lower():
        parts.append(f"Subject: {subject}.")
    seen: set[str] = set()
    for sentence in body[:3]:
        if sentence.lower() not in seen:  # oversized tickets repeat themselves
            seen.add(sentence.lower())
            parts.append(sentence)
    earlier = [turn for turn in ticket.history if turn.author == "customer" and turn.text.strip()]
    if earlier:
        first = content_sentences(earlier[-1].text)[:1]
        if first:
            parts.append(f"Earlier the customer wrote: {first[0]}")
    return clip(" ".join(parts), MAX_SUMMARY_CHARS)
