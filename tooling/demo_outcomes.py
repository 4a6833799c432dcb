"""The demo's stand-in for a helpdesk: how each decided ticket ended, as the feedback a deployment's
helpdesk posts to the gateway (`POST /v1/feedback`), and how to show what the learner made of it.

Nothing here is measured. Draft verdicts, CSAT scores and handle times are drawn with a fixed seed,
and an agent's resolution notes are those of the sample resolved case of the ticket's intent
(supportflow/sample_data/resolved_cases.jsonl), or none when no sample case has that intent. They
exist so that the learner's outcome KPIs and its knowledge loop have something to work on.
"""

from __future__ import annotations

import random
import textwrap
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from supportflow.contracts.v1 import events_pb2 as ev

SEED = 7
VERDICTS = (("accepted", 0.55), ("edited", 0.30), ("rejected", 0.15))
CSAT_SCORES = ((100, 0.45), (75, 0.40), (50, 0.10), (25, 0.05))  # mean 81.25 on the 0..100 scale
AGENT_HANDLE_TIME_S = (180, 1200)
PROPOSALS_SHOWN = 3


def _draw(rng: random.Random, weighted: Sequence[tuple[object, float]]) -> object:
    return rng.choices([value for value, _ in weighted], weights=[weight for _, weight in weighted])[0]


def simulated_feedback(records: Sequence[Mapping], notes_by_intent: Mapping[str, str], seed: int = SEED) -> list[dict]:
    """Feedback payloads for every decided ticket (`records` as `decision_record` makes them), in
    ticket order and each ticket's resolution last: a verdict on a review draft, an at-resolution
    CSAT, then the resolution. A RESPOND ticket is resolved by the bot; any other by an agent, who
    cites the draft's articles when the verdict kept the draft and writes the notes of
    `notes_by_intent` for the ticket's intent (none when it has no entry)."""
    rng = random.Random(seed)
    payloads: list[dict] = []
    for record in records:
        ticket_id = record["id"]
        cited: list[str] = []
        if record["decision"] == "review" and record.get("draft") and record.get("citations"):
            verdict = _draw(rng, VERDICTS)
            edit_ratio = round(rng.uniform(0.1, 0.4), 2) if verdict == "edited" else 0.0
            payloads.append({"ticket_id": ticket_id, "kind": "draft_verdict", "verdict": verdict, "edit_ratio": edit_ratio})
            if verdict != "rejected":
                cited = list(dict.fromkeys(citation["article_id"] for citation in record["citations"]))
        payloads.append({"ticket_id": ticket_id, "kind": "csat", "latency": "at_resolution",
                         "score": _draw(rng, CSAT_SCORES)})
        by_bot = record["decision"] == "respond"
        payloads.append({
            "ticket_id": ticket_id, "kind": "resolution", "resolved_by_bot": by_bot,
            "handle_time_s": 0 if by_bot else rng.randint(*AGENT_HANDLE_TIME_S),
            "resolution_notes": "" if by_bot else notes_by_intent.get(record["intent"], ""),
            "cited_article_ids": cited,
        })
    return payloads


def unbacked_resolutions(records: Sequence[Mapping], payloads: Sequence[Mapping]) -> dict[str, list[str]]:
    """Intent -> the tickets whose resolution in `payloads` has notes and cites no article: what the
    learner's knowledge loop groups into KB proposals (services/learner/knowledge.py; it also counts
    a ticket the retriever reported a gap for, whatever its resolution cites)."""
    intents = {record["id"]: record["intent"] for record in records}
    grouped: dict[str, list[str]] = defaultdict(list)
    for payload in payloads:
        if payload["kind"] == "resolution" and payload["resolution_notes"] and not payload["cited_article_ids"]:
            grouped[intents[payload["ticket_id"]]].append(payload["ticket_id"])
    return dict(grouped)


def format_outcomes(payloads: Sequence[Mapping], proposals: Sequence[ev.KbProposal], min_tickets: int) -> str:
    kinds = Counter(payload["kind"] for payload in payloads)
    lines = [
        "Outcomes (simulated) and the knowledge loop",
        "-------------------------------------------",
        f"The demo played the helpdesk: {len(payloads)} feedback events through `POST /v1/feedback` "
        f"({', '.join(f'{kind} {n}' for kind, n in kinds.most_common())}).",
        "Verdicts and CSAT are drawn with a fixed seed; an agent's notes are the sample resolved case's",
        "for the ticket's intent. The learner's panel below counts them.",
        "",
        f"KB article drafts the learner proposed (a topic whose answers the KB did not back {min_tickets} times): "
        f"{len(proposals)}",
    ]
    for proposal in proposals[:PROPOSALS_SHOWN]:
        asked = _section_items(proposal.body, "## What customers asked")
        resolved = _section_items(proposal.body, "## How agents resolved it")
        lines.append(f"[{proposal.topic}] \"{proposal.title}\" from {len(proposal.source_ticket_ids)} tickets")
        for label, items in (("asked", asked), ("resolved", resolved)):
            if items:
                lines.append(textwrap.fill(f"{label}: {items[0]}", width=100, initial_indent="    ",
                                           subsequent_indent="        "))
    if len(proposals) > PROPOSALS_SHOWN:
        lines.append(f"... and {len(proposals) - PROPOSALS_SHOWN} more on topics "
                     + ", ".join(p.topic for p in proposals[PROPOSALS_SHOWN:]))
    return "\n".join(lines) + "\n"


def _section_items(body: str, heading: str) -> list[str]:
    """The bullet lines under a Markdown heading of a proposal's body."""
    items: list[str] = []
    inside = False
    for line in body.splitlines():
        if line.startswith("## "):
            inside = line.strip() == heading
        elif inside and line.startswith("- "):
            items.append(line[2:])
    return items
