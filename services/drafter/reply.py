"""The structured reply every generator produces, and how it becomes text and a `Draft`.

Generators (offline, Claude) do not write free text: they fill `ReplyParts`, where each answer
sentence knows which sources back it. The guards (overreach, policy ledger) then remove or rewrite
individual sentences, and only the sentences that survive are rendered, with citation markers
renumbered so that [1], [2]... always point at a source the text still uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

CHANNEL_NAMES = {
    tk.CHANNEL_EMAIL: "email",
    tk.CHANNEL_CHAT: "chat",
    tk.CHANNEL_WEB_FORM: "web_form",
    tk.CHANNEL_API: "api",
    tk.CHANNEL_PHONE: "phone",
    tk.CHANNEL_SOCIAL: "social",
}


def channel_name(channel: int) -> str:
    return CHANNEL_NAMES.get(channel, "default")


@dataclass(frozen=True)
class DraftInput:
    """Everything a generator may read about one ticket."""

    ticket: tk.Ticket
    normalized: tk.NormalizedTicket
    classification: tk.Classification
    evidence: tuple[tk.EvidencePassage, ...]
    # What the tenant's systems showed about this customer's case (empty when no playbook applied).
    investigation: ev.Investigation = dataclasses.field(default_factory=ev.Investigation)
    # Indexes into `evidence` of canonical passages fetched only to back figures that other passages
    # repeat from them: cited beside those figures, never quoted on their own.
    backing_only: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Sentence:
    text: str  # without citation markers
    sources: tuple[int, ...] = ()  # indexes into ReplyParts.sources
    bullet: bool = False  # a list item in the source; rendered as one where the channel allows
    proposal: bool = False  # an offer the guard wrote in place of an action claim, not a fact


@dataclass(frozen=True)
class SourceRef:
    passage: tk.EvidencePassage
    quoted: tuple[str, ...] = ()  # the exact passage text the reply relies on


@dataclass(frozen=True)
class ReplyParts:
    status: int  # tk.DraftStatus: READY, or NO_EVIDENCE for a holding reply
    generator: str
    greeting: str = ""
    # What the customer's own records show, one line per finding, said before the help-center
    # answer; each is checked against `findings` (evidence_ledger.py), not against the passages.
    evidence_lead_in: str = ""
    evidence: tuple[str, ...] = ()
    findings: tuple[ev.Finding, ...] = ()
    lead_in: str = ""
    holding: str = ""  # said instead of an answer when there is no evidence
    answer: tuple[Sentence, ...] = ()
    uncertainties: tuple[str, ...] = ()
    follow_up_questions: tuple[str, ...] = ()
    ask_questions: bool = True  # False when another line already asks for the same things
    next_step: str = ""
    closing: str = ""
    sources: tuple[SourceRef, ...] = ()
    bullets: bool = False  # render bullet sentences as a list (email) or inline (chat)
    show_sources: bool = True
    sources_heading: str = "Sources:"
    max_chars: int = 1200
    # tk.Answerability: whether the generator judged that its sources answer the question asked.
    answerability: int = tk.ANSWERABILITY_UNSPECIFIED
    answerability_reason: str = ""  # for the agent, when the generator gives one

    def replace(self, **changes: object) -> "ReplyParts":
        return dataclasses.replace(self, **changes)


class ReplyGenerator(Protocol):
    name: str

    def generate(self, request: DraftInput) -> ReplyParts: ...


@dataclass(frozen=True)
class TextSlot:
    """One piece of reply text the guards inspect: where it lives and which sources back it."""

    part: str  # a ReplyParts field: answer, uncertainties, follow_up_questions, greeting, lead_in, holding...
    index: int  # position within a list part; 0 for single strings
    text: str
    sources: tuple[int, ...]


def text_slots(parts: ReplyParts) -> Iterator[TextSlot]:
    for name in ("greeting", "evidence_lead_in", "lead_in", "holding"):
        if getattr(parts, name):
            yield TextSlot(name, 0, getattr(parts, name), ())
    for index, text in enumerate(parts.evidence):
        yield TextSlot("evidence", index, text, ())
    for index, sentence in enumerate(parts.answer):
        yield TextSlot("answer", index, sentence.text, sentence.sources)
    for name in ("uncertainties", "follow_up_questions"):
        for index, text in enumerate(getattr(parts, name)):
            yield TextSlot(name, index, text, ())
    for name in ("next_step", "closing"):
        if getattr(parts, name):
            yield TextSlot(name, 0, getattr(parts, name), ())


def edit_slots(parts: ReplyParts, edits: dict[tuple[str, int], Sentence | str | None]) -> ReplyParts:
    """Apply per-slot edits: a new Sentence/string replaces the slot, None removes it."""
    if not edits:
        return parts
    changes: dict[str, object] = {}
    answer = []
    for index, sentence in enumerate(parts.answer):
        edit = edits.get(("answer", index), sentence)
        if edit is not None:
            answer.append(edit if isinstance(edit, Sentence) else dataclasses.replace(sentence, text=edit))
    changes["answer"] = tuple(answer)
    for name in ("evidence", "uncertainties", "follow_up_questions"):
        kept = []
        for index, text in enumerate(getattr(parts, name)):
            edit = edits.get((name, index), text)
            if edit is not None:
                kept.append(edit.text if isinstance(edit, Sentence) else edit)
        changes[name] = tuple(kept)
    for name in ("greeting", "evidence_lead_in", "lead_in", "holding", "next_step", "closing"):
        if (name, 0) in edits:
            edit = edits[(name, 0)]
            changes[name] = "" if edit is None else (edit.text if isinstance(edit, Sentence) else edit)
    return parts.replace(**changes)


def _with_marker(text: str, markers: Sequence[int]) -> str:
    text = text.strip()
    if not markers:
        return text if text[-1:] in ".!?:" else text + "."
    tag = "".join(f"[{m}]" for m in markers)
    body, end = (text[:-1], text[-1]) if text[-1:] in ".!?" else (text, ".")
    return f"{body.rstrip()} {tag}{end}"


def cited_order(parts: ReplyParts) -> list[int]:
    """Source indexes in the order the surviving answer first cites them."""
    order: list[int] = []
    for sentence in parts.answer:
        for source in sentence.sources:
            if source not in order and 0 <= source < len(parts.sources):
                order.append(source)
    return order


def citation_numbers(parts: ReplyParts) -> dict[int, int]:
    """The [n] of each cited source: passages of one article share a number."""
    articles: list[str] = []
    numbers = {}
    for source in cited_order(parts):
        article = parts.sources[source].passage.article_id
        if article not in articles:
            articles.append(article)
        numbers[source] = articles.index(article) + 1
    return numbers


def render_text(parts: ReplyParts) -> str:
    """The reply as the customer would read it, within `parts.max_chars` where possible.

    Sentences are dropped from the end of the answer (never cut in the middle: a truncated
    sentence can change the meaning of a number) until the text fits, keeping at least one.
    """
    answer = list(parts.answer)
    text = _compose(parts, answer, parts.show_sources)
    while len(text) > parts.max_chars and len(answer) > 1:
        answer.pop()
        text = _compose(parts, answer, parts.show_sources)
    if len(text) > parts.max_chars and parts.show_sources:
        text = _compose(parts, answer, False)
    return text


def kept_answer(parts: ReplyParts) -> ReplyParts:
    """`parts` reduced to the answer sentences `render_text` actually shows."""
    answer = list(parts.answer)
    while len(_compose(parts, answer, parts.show_sources)) > parts.max_chars and len(answer) > 1:
        answer.pop()
    return parts.replace(answer=tuple(answer))


def _compose(parts: ReplyParts, answer: list[Sentence], show_sources: bool) -> str:
    shown = parts.replace(answer=tuple(answer))
    order = cited_order(shown)
    number = citation_numbers(shown)
    blocks: list[str] = []
    if parts.greeting:
        blocks.append(parts.greeting)
    body: list[str] = []
    if parts.evidence:
        if parts.bullets:
            lines = [parts.evidence_lead_in] if parts.evidence_lead_in else []
            body.append("\n".join([*lines, *(f"- {_with_marker(text, [])}" for text in parts.evidence)]))
        else:
            body.append(" ".join([parts.evidence_lead_in, *(_with_marker(text, []) for text in parts.evidence)]).strip())
    if parts.holding:
        body.append(parts.holding)
    if parts.lead_in and answer:
        body.append(parts.lead_in)
    listed: list[str] = []
    prose: list[str] = []

    def flush_list() -> None:
        if listed:
            body.append("\n".join(f"- {item}" for item in listed))
            listed.clear()

    def flush_prose() -> None:
        if prose:
            body.append(" ".join(prose))
            prose.clear()

    for sentence in answer:
        rendered = _with_marker(sentence.text, list(dict.fromkeys(number[s] for s in sentence.sources if s in number)))
        if parts.bullets and sentence.bullet:
            flush_prose()
            listed.append(rendered)
        else:
            flush_list()
            prose.append(rendered)
    flush_list()
    flush_prose()
    tail = [*parts.uncertainties, *(parts.follow_up_questions if parts.ask_questions else ())]
    if parts.next_step:
        tail.append(parts.next_step)
    if parts.bullets:
        blocks.extend(body)
        if tail:
            blocks.append(" ".join(tail))
    else:
        blocks.append(" ".join([*body, *tail]))
    if show_sources and order:
        lines = [parts.sources_heading] if parts.sources_heading else []
        listed: set[int] = set()
        for source in order:
            if number[source] in listed:
                continue
            listed.add(number[source])
            passage = parts.sources[source].passage
            label = passage.title or passage.article_id
            lines.append(f"[{number[source]}] {label}" + (f" ({passage.url})" if passage.url and parts.bullets else ""))
        blocks.append("\n".join(lines) if parts.bullets else " ".join(lines))
    if parts.closing:
        blocks.append(parts.closing)
    separator = "\n\n" if parts.bullets else "\n"
    return separator.join(block for block in blocks if block.strip())


def citations(parts: ReplyParts) -> list[tk.Citation]:
    """One citation per article the rendered answer uses, numbered as in the text; its passage is
    the text relied on from every chunk of that article."""
    result: dict[int, tk.Citation] = {}
    for source, number in citation_numbers(parts).items():
        ref = parts.sources[source]
        passage = ref.passage
        text = " ".join(ref.quoted) if ref.quoted else passage.text
        if number in result:
            result[number].passage += "\n" + text
            result[number].stale |= passage.stale
            continue
        result[number] = tk.Citation(
            article_id=passage.article_id,
            chunk_id=passage.chunk_id,
            title=passage.title,
            passage=text,
            url=passage.url,
            stale=passage.stale,
        )
    return [result[number] for number in sorted(result)]
