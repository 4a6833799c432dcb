"""The texts delivery posts: a public reply (sent automatically, or an agent's from the
workspace), an internal note for review or escalation (the decision's, or an agent's escalation), a
public follow-up. Pure: every function takes what it shows and returns the plain text and the HTML.

Each message is built once as a small document (blocks of lines, a line being text and links) and
rendered twice, so the HTML says exactly what the plain text says: its text content equals the
plain text once whitespace is ignored. Reconciliation relies on it (`same_text`): a helpdesk may
keep either form, or turn the HTML into its own plain text, and the comparison still recognises
what was posted. Links show their URL as their text for the same reason. Everything from a ticket,
a draft or an article is escaped in the HTML; only http(s) URLs become links.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Iterable, Sequence, Union

from conversation.summary import clip
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

MAX_REPLY_CITATIONS = 3
MAX_PASSAGE_CHARS = 300
COLLEAGUE_NOTE = "This answer was sent automatically. If you reply, a colleague will read your message."
SOURCES_HEADING = "Sources:"
# How the drafter lists its sources ("Sources:" then "[1] Title (url)" lines, or all on one line in
# chat): replaced by the linked list, in the same place (before the closing).
_DRAFT_SOURCES_LINE = re.compile(r"^\s*sources:", re.I)
_DRAFT_SOURCE_ITEM = re.compile(r"^\s*\[\d+\]\s")
_BULLET = re.compile(r"^\s*[-*\u2022]\s+")

# Identifier kinds (the classifier's missing_identifiers) as a customer reads them.
IDENTIFIER_NAMES = {
    "order_id": "the order number",
    "transaction_id": "the transaction ID",
    "request_id": "the request ID",
    "error_code": "the error code you see",
    "amount": "the amount involved",
    "date": "the date it happened",
    "card_last4": "the last four digits of the card",
    "account_id": "your account number",
    "merchant": "the merchant's name",
    "currency": "the currency",
    "country": "the country",
    "recipient": "the recipient's details",
}


@dataclass(frozen=True)
class Link:
    """A URL, shown in plain text as "label: url" and in HTML as the label linked to the URL."""

    url: str
    label: str = ""

    @property
    def text(self) -> str:
        return f"{self.label}: {self.url}" if self.label else self.url


Inline = Union[str, Link]
Line = tuple[Inline, ...]


@dataclass(frozen=True)
class Block:
    lines: tuple[Line, ...]
    heading: str = ""
    bullets: bool = False


@dataclass(frozen=True)
class ComposedMessage:
    text: str
    html: str


@dataclass(frozen=True)
class SourceLink:
    """A citation as it is shown: numbered as in the draft, with the URL it links to (if any)."""

    number: int
    article_id: str
    title: str
    url: str
    passage: str = ""


def _line(*parts: Inline) -> Line:
    return tuple(part for part in parts if part != "")


def _text_line(text: str) -> Line:
    return (text,)


def _is_web_url(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


def render(blocks: Sequence[Block]) -> ComposedMessage:
    text_blocks: list[str] = []
    html_blocks: list[str] = []
    for block in blocks:
        if not block.lines and not block.heading:
            continue
        text_lines = [block.heading] if block.heading else []
        text_lines += [("- " if block.bullets else "") + _line_text(line) for line in block.lines]
        text_blocks.append("\n".join(text_lines))
        heading = f"<strong>{html.escape(block.heading)}</strong>" if block.heading else ""
        if block.bullets:
            items = "".join(f"<li>{_line_html(line)}</li>" for line in block.lines)
            html_blocks.append((f"<p>{heading}</p>" if heading else "") + (f"<ul>{items}</ul>" if items else ""))
        else:
            rows = ([heading] if heading else []) + [_line_html(line) for line in block.lines]
            html_blocks.append("<p>" + "<br>".join(rows) + "</p>")
    return ComposedMessage("\n\n".join(text_blocks), "\n".join(html_blocks))


def _line_text(line: Line) -> str:
    return "".join(part.text if isinstance(part, Link) else part for part in line)


def _line_html(line: Line) -> str:
    rendered = []
    for part in line:
        if isinstance(part, Link):
            url = html.escape(part.url, quote=True)
            shown = html.escape(part.label, quote=False) if part.label else url
            if _is_web_url(part.url):
                rendered.append(f'<a href="{url}">{shown}</a>')
            else:  # not a web address: shown, never linked
                rendered.append(f"{shown}: {url}" if part.label else url)
        else:
            rendered.append(html.escape(part, quote=False))
    return "".join(rendered)


def text_blocks(text: str) -> list[Block]:
    """Free text (a draft, a summary) as blocks: paragraphs split at blank lines, a run of "- "
    lines as a list."""
    blocks: list[Block] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in paragraph.splitlines() if line.strip()]
        run: list[str] = []
        bullets: list[str] = []
        for line in lines:
            if _BULLET.match(line):
                if run:
                    blocks.append(Block(tuple(_text_line(item) for item in run)))
                    run = []
                bullets.append(_BULLET.sub("", line, count=1))
            else:
                if bullets:
                    blocks.append(Block(tuple(_text_line(item) for item in bullets), bullets=True))
                    bullets = []
                run.append(line.strip())
        if run:
            blocks.append(Block(tuple(_text_line(item) for item in run)))
        if bullets:
            blocks.append(Block(tuple(_text_line(item) for item in bullets), bullets=True))
    return blocks


def split_draft_sources(text: str) -> tuple[str, str]:
    """The draft's text before and after its own sources list (which delivery replaces with links);
    the whole text and "" when it has none."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _DRAFT_SOURCES_LINE.match(line):
            end = index + 1
            while end < len(lines) and _DRAFT_SOURCE_ITEM.match(lines[end]):
                end += 1
            return "\n".join(lines[:index]).strip(), "\n".join(lines[end:]).strip()
    return text.strip(), ""


def sources_block(sources: Sequence[SourceLink], *, with_passages: bool = False) -> Block:
    lines: list[Line] = []
    for source in sources:
        label = source.title or source.article_id or "Article"
        if source.url:
            lines.append(_line(f"[{source.number}] ", Link(source.url, label)))
        else:
            lines.append(_text_line(f"[{source.number}] {label}"))
        if with_passages and source.passage:
            lines.append(_text_line(f"    \u201c{clip(' '.join(source.passage.split()), MAX_PASSAGE_CHARS)}\u201d"))
    return Block(tuple(lines), heading=SOURCES_HEADING)


# --- the messages ------------------------------------------------------------------------------


def compose_reply(draft_text: str, sources: Sequence[SourceLink], *, automatic: bool = True) -> ComposedMessage:
    """The public answer: the draft, its sources as links (at most MAX_REPLY_CITATIONS) where the
    draft listed them (at the end when it lists none), and, when it was sent `automatic`ally, a
    line saying a colleague reads any reply. An agent's approved or edited reply is the same
    message with the agent's text and without that line: a person sent it."""
    head, tail = split_draft_sources(draft_text)
    blocks = text_blocks(head)
    shown = list(sources)[:MAX_REPLY_CITATIONS]
    if shown:
        blocks.append(sources_block(shown))
    blocks += text_blocks(tail)
    if automatic:
        blocks.append(Block((_text_line(COLLEAGUE_NOTE),)))
    return render(blocks)


def compose_follow_up(questions: Sequence[str], missing_kinds: Sequence[str]) -> ComposedMessage:
    """The public request for what is missing: the drafter's questions when it wrote some, else
    the identifier kinds in words (any one of a group will do, so: whichever they have)."""
    blocks = [Block((_text_line("Thank you for your message. Before we can look into your case, we need a little more information."),))]
    if questions:
        blocks.append(Block(tuple(_text_line(q.strip()) for q in questions if q.strip()), bullets=True))
    elif missing_kinds:
        blocks.append(Block(tuple(_text_line(identifier_name(kind)) for kind in missing_kinds), bullets=True,
                            heading="Could you send us whichever of these you have?"))
    else:
        blocks.append(Block((_text_line(
            "Could you tell us a little more: any order number, transaction ID, date or error message "
            "that goes with your request?"),)))
    blocks.append(Block((_text_line("Just reply to this message with those details and we will pick it up from there."),)))
    return render(blocks)


def compose_review_note(decided: ev.TicketDecided, sources: Sequence[SourceLink], reference: str) -> ComposedMessage:
    """The internal note for an agent: the draft to review, its evidence, the policy-claim ledger
    and why it was not sent automatically."""
    draft = decided.draft
    classification = decided.classification
    blocks = [
        Block((_text_line("Supportflow held this draft for an agent: check it, edit it if needed, then send it."),),
              heading="Draft for review"),
        Block(tuple(_text_line(line) for line in _decision_lines(decided)), heading="Why it was held"),
    ]
    if draft.text.strip():
        head, tail = split_draft_sources(draft.text)
        blocks.append(Block((), heading="Draft"))
        blocks += text_blocks("\n\n".join(part for part in (head, tail) if part))
    else:
        blocks.append(Block((_text_line("(no draft text: the agent writes the answer)"),), heading="Draft"))
    if sources:
        blocks.append(sources_block(sources, with_passages=True))
    blocks += _records_blocks(decided)
    blocks.append(_ledger_block(draft.ledger))
    # The draft's own next step is the customer's, and already in its text.
    extra = [*(f"Uncertain: {u}" for u in draft.uncertainties), *(f"Ask: {q}" for q in draft.follow_up_questions)]
    suggested = decided.packet.suggested_next_step.strip() if decided.HasField("packet") else ""
    if suggested and suggested != draft.next_step.strip():
        extra.append(f"Suggested next step: {suggested}")
    if extra:
        blocks.append(Block(tuple(_text_line(item) for item in extra), heading="Notes", bullets=True))
    blocks.append(Block((_text_line(f"Intent {classification.intent or 'unknown'}; reference {reference}"),)))
    return render(blocks)


def compose_escalation_note(decided: ev.TicketDecided, sources: Sequence[SourceLink], reference: str) -> ComposedMessage:
    """The internal note for the person taking over: the whole context packet, so the customer
    never has to repeat themselves."""
    packet = decided.packet
    has_packet = decided.HasField("packet")
    queue = packet.target_queue or decided.target_queue
    blocks = [
        Block((_text_line(f"Escalated to {queue or 'a human queue'}: the context below is everything Supportflow knows."),),
              heading="Escalation packet"),
        Block(tuple(_text_line(line) for line in _decision_lines(decided)), heading="Why it was escalated"),
    ]
    if not has_packet:
        blocks.append(Block((_text_line("(the escalator sent no context packet)"),), heading="Packet"))
    else:
        facts = [
            f"Intent: {packet.intent or 'unknown'}",
            f"Archetype: {_enum(tk.Archetype, packet.archetype, 'ARCHETYPE_')}",
            f"Urgency: {_enum(tk.Urgency, packet.urgency, 'URGENCY_')}",
            f"Tier: {_enum(tk.CustomerTier, packet.tier, 'CUSTOMER_TIER_')}",
            f"Case type: {_enum(ev.CaseType, decided.case_type, 'CASE_TYPE_')}",
            f"Target queue: {queue or 'none'}",
        ]
        if packet.risk_flags:
            facts.append("Risk flags: " + ", ".join(_enum(tk.RiskFlag, f, "RISK_FLAG_") for f in packet.risk_flags))
        if packet.account_state:
            facts.append("Account: " + ", ".join(f"{k}={v}" for k, v in sorted(packet.account_state.items())))
        blocks.append(Block(tuple(_text_line(f) for f in facts), heading="Customer and case"))
        blocks.append(Block((), heading="Summary"))
        blocks += text_blocks(packet.conversation_summary or "(no summary)")
        blocks += _records_blocks(decided)
        blocks.append(_list_block("Steps already tried", packet.steps_tried, "none reported"))
        blocks.append(_list_block("Frustration signals", packet.frustration_signals, "none"))
        articles = [
            SourceLink(i + 1, a.article_id, a.title, a.url, a.text) for i, a in enumerate(packet.articles)
        ]
        if articles:
            block = sources_block(articles, with_passages=True)
            blocks.append(Block(block.lines, heading="Evidence articles"))
        else:
            blocks.append(_list_block("Evidence articles", [], "none found"))
        blocks.append(_list_block("Similar cases", packet.similar_case_ids, "none"))
        blocks.append(Block((_text_line(packet.incident_id or decided.incident_id or "none"),), heading="Incident"))
        blocks.append(_list_block("Missing information", packet.missing_information, "none"))
        blocks.append(Block((_text_line(packet.suggested_next_step or "(none)"),), heading="Suggested next step"))
        unknown = ", ".join(packet.unknown_fields) or "none"
        blocks.append(Block((_text_line(f"{packet.completeness:.0%} of the required fields (unknown: {unknown})"),),
                            heading="Completeness"))
    if decided.HasField("draft") and decided.draft.text.strip():
        head, tail = split_draft_sources(decided.draft.text)
        blocks.append(Block((_text_line("Not sent to the customer."),), heading="Draft (for reference)"))
        blocks += text_blocks("\n\n".join(part for part in (head, tail) if part))
        if sources:
            blocks.append(sources_block(sources))
        if decided.draft.ledger:
            blocks.append(_ledger_block(decided.draft.ledger))
    blocks.append(Block((_text_line(f"Reference {reference}"),)))
    return render(blocks)


def compose_agent_escalation_note(queue: str, agent: str, note: str, reference: str) -> ComposedMessage:
    """The internal note for an agent's escalation from the workspace: where it went, who sent it
    there and why (the agent's note). The context packet was already posted with the decision."""
    blocks = [Block((_text_line(f"Escalated to {queue or 'another queue'} by {agent or 'an agent'} in the Supportflow workspace."),),
                    heading="Escalated by an agent")]
    blocks.append(Block((), heading="Note"))
    blocks += text_blocks(note) if note.strip() else [Block((_text_line("(no note)"),))]
    blocks.append(Block((_text_line(f"Reference {reference}"),)))
    return render(blocks)


def _decision_lines(decided: ev.TicketDecided) -> list[str]:
    classification = decided.classification
    lines = [decided.reason or "(no reason given)"]
    confidence = f"{classification.confidence:.2f}" if classification.intent else "n/a"
    lines.append(f"Intent: {classification.intent or 'unknown'} (confidence {confidence})")
    route = _enum(tk.Route, classification.route, "ROUTE_")
    lines.append(f"Route: {route}" + (f" ({classification.route_reason})" if classification.route_reason else ""))
    return lines


def _records_blocks(decided: ev.TicketDecided) -> list[Block]:
    """What the tenant's systems showed, as the investigation found it: the conclusion first, then
    every finding with its source and record, the lookups that failed and why, and what stays
    unsettled. Internal findings (a deploy, a configuration change) are for agents: shown here,
    marked. Nothing when no playbook applied."""
    investigation = decided.investigation
    if not investigation.findings:
        return []
    settled = _enum(ev.CaseType, investigation.case_type, "CASE_TYPE_").replace("_", " ")
    answered = sum(1 for f in investigation.findings if f.available)
    head = (f"{investigation.playbook or 'investigation'}: {answered} of {len(investigation.findings)} lookups "
            f"answered; settled: {settled if investigation.case_type else 'nothing'}")
    lines = []
    for finding in sorted(investigation.findings, key=lambda f: (not f.concludes, not f.available)):
        where = ", ".join(part for part in (finding.source, finding.record_id) if part)
        if not finding.available:
            lines.append(_text_line(f"{where}: not available ({finding.unavailable_reason or 'no reason given'})"))
            continue
        marks = [mark for mark, on in (("conclusion", finding.concludes), ("internal", finding.internal)) if on]
        prefix = f"[{', '.join(marks)}] " if marks else ""
        lines.append(_text_line(f"{prefix}{finding.summary.strip()} ({where})"))
    blocks = [Block((_text_line(head),), heading="What the records show"), Block(tuple(lines), bullets=True)]
    if investigation.uncertain:
        blocks.append(Block(tuple(_text_line(f"Not settled: {line}") for line in investigation.uncertain)))
    return blocks


def _ledger_block(ledger: Iterable[tk.PolicyClaim]) -> Block:
    entries = []
    for claim in ledger:
        state = "verified" if claim.verified else "NOT VERIFIED"
        source = f"article {claim.article_id}" if claim.article_id else "no canonical source"
        entries.append(f"{claim.claim} ({claim.kind or 'claim'}): {state}, {source}")
    lines = [_text_line(entry) for entry in dict.fromkeys(entries)]  # a claim checked twice reads once
    if not lines:
        return Block((_text_line("no policy statements in the draft"),), heading="Policy claims")
    return Block(tuple(lines), heading="Policy claims", bullets=True)


def _list_block(heading: str, items: Sequence[str], empty: str) -> Block:
    if not items:
        return Block((_text_line(empty),), heading=heading)
    return Block(tuple(_text_line(item) for item in items), heading=heading, bullets=True)


def _enum(enum_type, value: int, prefix: str) -> str:  # type: ignore[no-untyped-def]
    try:
        name = enum_type.Name(value)
    except ValueError:
        return "unknown"
    label = name.removeprefix(prefix).lower()
    return "unknown" if label == "unspecified" else label


def identifier_name(kind: str) -> str:
    return IDENTIFIER_NAMES.get(kind, kind.replace("_", " "))


# --- comparing what a channel shows with what was posted ---------------------------------------


class _TextOf(HTMLParser):
    _BREAKS = {"br", "p", "div", "li", "ul", "ol", "tr", "h1", "h2", "h3", "h4", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:  # type: ignore[no-untyped-def]
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextOf()
    parser.feed(markup)
    parser.close()
    return "".join(parts for parts in parser.parts)


_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalised(text: str, *, markup: bool = False) -> str:
    """What two renderings of one message share: letters and digits, case-folded. Markup (when
    `markup`), entity escapes, bullets, punctuation and whitespace (which helpdesks rewrite) do not
    count."""
    if markup:
        text = html_to_text(text)
    return _NOT_WORD.sub("", html.unescape(text)).casefold()


def _forms(text: str) -> set[str]:
    # Read as plain text and as HTML: a plain text may contain "<" itself, and a channel may hand
    # back either.
    return {form for form in (normalised(text), normalised(text, markup=True)) if form}


def same_text(posted: ComposedMessage, found: str) -> bool:
    """Whether text read back from a channel (plain or HTML) is the message that was posted."""
    return bool(_forms(found) & (_forms(posted.text) | _forms(posted.html)))
