"""Split a KB passage (Markdown) into the units an extractive reply can quote: sentences of
prose, list items kept whole, table rows read as "label: value".

List items stay intact because a bullet such as "International usage: 3% of the amount, minimum
$5.00" is one statement; cutting it at a comma or re-joining it with its neighbours changes what
it says. A list introduced by "...the greater of:" is merged into its lead line for the same
reason, and so is a list of phrases completing a lead sentence ("...have the following ready when
you contact us:"): quoted alone, "The merchant name and purchase amount" says nothing. Other lists
keep their items apart, each with its lead line as context. An FAQ answer nested under its question
becomes its own unit, with the question kept as context for scoring.

Agent-facing material never becomes a unit: sections titled internal / agent / procedure / "do
not disclose", and lines that talk about "the customer", internal tools or scripts ("Say: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from supportflow.contracts.v1 import ticket_pb2 as tk

MAX_UNIT_CHARS = 360
MIN_UNIT_WORDS = 3

_HEADING = re.compile(r"^\s*(#{1,6})\s+(.+?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^(?P<indent>\s*)(?:[-*+•]|\d{1,2}[.)])\s+(?P<text>.+)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_INTERNAL_SECTION = re.compile(
    r"\binternal\b|\bagents?\b|\btool usage\b|\bdisclose\b|\bprotocol\b|\bprocedure\b|\bchecklist\b|"
    r"\bcode \d+\b|\bsecurity sensitive\b",
    re.I,
)
_AGENT_FACING = re.compile(
    r"\bcustomers?\b|\bagents?\b|\bsay:|\bexplain:|\btool:|\b\w+_\w+_\d{3,}\b|transfer_to_human|\binternal\b|"
    r"\bdo not (?:tell|disclose|proceed|offer)\b|\bnever tell\b|\bescalate to\b|\bdocument the\b|"
    r"\binteraction notes\b|\bfollow (?:the )?\w* ?protocol\b|\blook up\b|\bcheck if\b|\bask security\b|"
    r"\bsecurity concern\b|\bextra caution\b|['‘\"“]I ",
    re.I,
)
# Two or more words in capitals ("DO NOT", "EXTRA CAUTION") mark an instruction to staff.
_SHOUTING = re.compile(r"\b[A-Z]{2,}\b(?:\s+\b[A-Z]{2,}\b)+")
# A branch of a decision ("If Yes, enable ...", "Otherwise, ...") answers a question stated
# elsewhere: quoted alone it reads as an instruction the customer never asked for.
_BRANCH = re.compile(r"^\s*(?:if (?:yes|no)\b|(?:if so|if not|otherwise)\s*,)", re.I)
_UNUSABLE = re.compile(r"\[value not available\]|\bTODO\b|\bTBD\b|lorem ipsum", re.I)
_FIGURE = re.compile(r"(?<![A-Za-z])\d")  # a number, not the 2 of "P2P"
_LEAD_SENTENCE_WORDS = 6
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "approx.", "min.", "max.", "no.", "u.s.", "mr.", "ms.", "dr.", "st.", "inc.")


@dataclass(frozen=True)
class PassageUnit:
    passage: int  # index of the passage in the evidence list
    order: int  # position inside the passage
    text: str  # reads as a sentence
    source_text: str  # exactly as the passage has it
    section: str
    context: str  # what the unit answers (an FAQ question, a list's lead line)
    bullet: bool
    from_table: bool


def _plain(text: str) -> str:
    """Markdown emphasis, code and links reduced to their words."""
    text = re.sub(r"\[([^\]]+)\]\((?:[^)]+)\)", r"\1", text)
    text = re.sub(r"(\*\*|__|`)", "", text)
    text = re.sub(r"(?<!\w)[*_](\S[^*_]*?)[*_](?!\w)", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(paragraph: str) -> list[str]:
    pieces = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])", paragraph)
    sentences: list[str] = []
    for piece in pieces:
        if sentences and sentences[-1].lower().endswith(_ABBREVIATIONS):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return [s.strip() for s in sentences if s.strip()]


def _cells(line: str) -> list[str]:
    return [_plain(cell) for cell in line.strip().strip("|").split("|")]


def _says_nothing_alone(lead: str, items: list[tuple[int, str, str]]) -> bool:
    """Whether a list is phrases completing its lead sentence ("...have the following ready: the
    date of the transaction; the merchant name"), to be quoted with it. A short lead is a label
    ("Fees and rates:"), and an item with a figure ("Monthly maintenance fee: $10.00") is a statement
    of its own; nested lists keep their structure; the whole must fit in a unit."""
    return (
        len(lead.split()) >= _LEAD_SENTENCE_WORDS
        and all(indent == items[0][0] and not _FIGURE.search(text) for indent, text, _ in items)
        and len(lead) + sum(len(text) for _, text, _ in items) <= MAX_UNIT_CHARS
    )


def _merged(lead: str, items: list[str]) -> str:
    """A lead line ending in a colon and the items it introduces, as one statement."""
    merged = lead
    for number, item in enumerate(items):
        joiner = " " if number == 0 or re.search(r"(?:,| or| and)$", merged) else "; "
        merged += joiner + item.rstrip(".;")
    return merged


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text[-1:] in ".!?" else text + "."


_NUMBERED = re.compile(r"^\s*\d{1,2}[.)]\s")


def is_step(unit: PassageUnit) -> bool:
    """Whether the unit is an item of a numbered list: one step of a procedure."""
    return unit.bullet and bool(_NUMBERED.match(unit.source_text))


def procedures(units: list[PassageUnit]) -> dict[tuple[int, int], tuple[PassageUnit, ...]]:
    """Each step's whole procedure, by (passage, order): the numbered items that follow one another
    in the same list (same passage, section and lead line)."""
    whole: dict[tuple[int, int], tuple[PassageUnit, ...]] = {}
    run: list[PassageUnit] = []

    def close() -> None:
        for step in run:
            whole[(step.passage, step.order)] = tuple(run)
        run.clear()

    for unit in units:
        if run and not (is_step(unit) and unit.passage == run[-1].passage and unit.order == run[-1].order + 1
                        and unit.section == run[-1].section and unit.context == run[-1].context):
            close()
        if is_step(unit):
            run.append(unit)
    close()
    return whole


def passage_units(passage: tk.EvidencePassage, index: int) -> list[PassageUnit]:
    units: list[PassageUnit] = []
    section = passage.section
    internal = bool(_INTERNAL_SECTION.search(section))
    paragraph: list[str] = []
    header: list[str] = []
    items: list[tuple[int, str, str]] = []  # (indent, plain text, source line)
    lead = ""  # a paragraph's last sentence when it ends in a colon, until the list it introduces
    in_code = False

    def add(text: str, source: str, *, context: str = "", bullet: bool = False, table: bool = False) -> None:
        if internal or len(text.split()) < MIN_UNIT_WORDS or len(text) > MAX_UNIT_CHARS:
            return
        if _UNUSABLE.search(text) or _AGENT_FACING.search(text) or _AGENT_FACING.search(context):
            return
        if _SHOUTING.search(text) or text.rstrip().endswith("?") or _BRANCH.match(text):
            return
        units.append(PassageUnit(index, len(units), _sentence(text), source, section, context, bullet, table))

    def flush_paragraph() -> None:
        nonlocal lead
        if paragraph:
            joined = _plain(" ".join(line.strip() for line in paragraph))
            sentences = split_sentences(joined)
            for sentence in sentences:
                if not sentence.endswith(":"):
                    add(sentence, sentence)
            last = sentences[-1] if sentences else ""
            lead = last if last.endswith(":") and len(last.split()) >= MIN_UNIT_WORDS else ""
            paragraph.clear()

    def flush_items() -> None:
        nonlocal lead
        if not items:
            return
        intro, lead = lead, ""
        if _says_nothing_alone(intro, items):
            add(_merged(intro, [text for _, text, _ in items]), "\n".join([intro, *(source for _, _, source in items)]),
                bullet=True)
            items.clear()
            return
        position = 0
        while position < len(items):
            indent, text, source = items[position]
            children = []
            position += 1
            while position < len(items) and items[position][0] > indent:
                children.append(items[position])
                position += 1
            if not children:
                add(text, source, context=intro, bullet=True)
            elif text.endswith(":") and sum(len(c[1]) for c in children) + len(text) <= MAX_UNIT_CHARS:
                add(_merged(text, [c[1] for c in children]), "\n".join([source, *(c[2] for c in children)]),
                    bullet=True)
            else:
                if not text.endswith((":", "?")):
                    add(text, source, context=intro, bullet=True)
                for _, child_text, child_source in children:
                    add(child_text, child_source, context=text, bullet=True)
        items.clear()

    for raw in passage.text.splitlines():
        if raw.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        heading = _HEADING.match(raw)
        if heading:
            flush_paragraph()
            flush_items()
            section = _plain(heading.group(2))
            internal = bool(_INTERNAL_SECTION.search(section))
            header = []
            lead = ""
            continue
        line = raw.rstrip()
        if not line.strip():
            flush_paragraph()
            flush_items()
            header = []
            continue
        if line.strip().startswith("|"):
            flush_paragraph()
            flush_items()
            lead = ""
            if _TABLE_SEPARATOR.match(line):
                continue
            cells = _cells(line)
            if not header:
                header = cells
                continue
            label, values = cells[0], [c for c in cells[1:] if c]
            if label and values:
                notes = [f"{h.lower()}: {v}" for h, v in zip(header[2:], cells[2:]) if v and h]
                text = f"{label}: {values[0]}" + (f" ({'; '.join(notes)})" if notes else "")
                add(text, line.strip(), table=True)
            continue
        item = _LIST_ITEM.match(line)
        if item:
            flush_paragraph()
            items.append((len(item["indent"].expandtabs(4)), _plain(item["text"]), line.strip()))
            continue
        if items and line.startswith((" ", "\t")):
            indent, text, source = items[-1]
            items[-1] = (indent, f"{text} {_plain(line)}", f"{source}\n{line.strip()}")
            continue
        flush_items()
        paragraph.append(line)
    flush_paragraph()
    flush_items()
    return units
