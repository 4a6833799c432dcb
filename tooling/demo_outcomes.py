"""The demo's simulated customers and agents: how each decided ticket went on, made to happen the way
it happens in a deployment, and how to show what came of it.

Nothing here is measured: every draw is seeded. The customers (SIMULATED) act on their tickets
through their own channels, on the local provider stand-ins' `/_sim/outcomes` API: they reply
(sometimes saying they already explained it), rate the answer on their helpdesk's own scale, and
reopen a solved ticket by writing again; a support agent solves it. The stand-ins then call the
gateway's webhooks as Zendesk, Intercom and Freshdesk would (mail: a threaded reply over SMTP), and
the gateway turns them into `tickets.feedback` outcomes. An API ticket has no customer-facing
channel to act through. Nothing calls the learner.

The agents (SIMULATED) give what only an agent can: a verdict on each review draft and the ticket's
resolution (handle time, notes, the articles their answer used), posted through the gateway's
signed feedback API as a workspace integration would. An agent's notes are those of the sample
resolved case of the ticket's intent (tenants/demo-bank/resolved_cases.jsonl).
"""

from __future__ import annotations

import random
import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from supportflow.contracts.v1 import events_pb2 as ev

SEED = 7
VERDICTS = (("accepted", 0.55), ("edited", 0.30), ("rejected", 0.15))
AGENT_HANDLE_TIME_S = (180, 1200)
PROPOSALS_SHOWN = 3

# The customers' behaviour (shares of the decided tickets on a customer-facing channel).
REPLY_SHARE = 0.35  # writes again after the first response
REPETITION_SHARE = 0.3  # of those replies: "I already explained this"
RATE_SHARE = 0.7  # of solved tickets: answers the satisfaction survey
REOPEN_SHARE = 0.08  # of solved tickets: writes again, which reopens it
# What the simulated customers write. Generic: no tenant's product, intent or sample ticket.
REPETITIONS = (
    "I already explained this in my first message. Please read it again.",
    "As I said before, I have already given you all of this.",
    "I already told you what happened, why are you asking again?",
)
FOLLOW_UPS = (
    "Thanks. One more question: how long will this take?",
    "OK, I have tried that. What should I do next?",
    "Thank you for the quick answer.",
)
REOPENINGS = (
    "This is still not sorted, the problem is back.",
    "Sorry, it is happening again.",
)
# Each helpdesk's own rating scale, and how a customer answers on it: (score, weight) when the
# conversation went well, and when they had to repeat themselves.
RATINGS = {
    "zendesk": ((("good", 0.85), ("bad", 0.15)), (("good", 0.4), ("bad", 0.6))),
    "intercom": (((5, 0.5), (4, 0.3), (3, 0.12), (2, 0.05), (1, 0.03)),
                 ((5, 0.15), (4, 0.2), (3, 0.3), (2, 0.2), (1, 0.15))),
    "freshdesk": (((103, 0.35), (102, 0.3), (101, 0.15), (100, 0.1), (-101, 0.05), (-102, 0.03), (-103, 0.02)),
                  ((103, 0.1), (102, 0.1), (101, 0.15), (100, 0.2), (-101, 0.2), (-102, 0.15), (-103, 0.1))),
}
# The status a support agent sets when the ticket is done, in each helpdesk's own terms.
SOLVED_STATUS = {"zendesk": "solved", "intercom": "closed", "freshdesk": 4}
CUSTOMER_CHANNELS = ("zendesk", "intercom", "freshdesk", "email")


def _draw(rng: random.Random, weighted: Sequence[tuple[object, float]]) -> object:
    return rng.choices([value for value, _ in weighted], weights=[weight for _, weight in weighted])[0]


@dataclass
class CustomerAction:
    """One thing a simulated customer (or the agent solving the ticket) does on a channel."""

    ticket_id: str  # the pipeline's
    channel: str
    external_id: str  # the ticket as its channel knows it (a Message-ID for mail)
    action: str  # reply, rate, status (/_sim/outcomes)
    what: str  # repetition, follow_up, reopen, solved, rating
    fields: dict = field(default_factory=dict)
    answers: list = field(default_factory=list)  # (webhook event, the gateway's answer) once done


def simulated_customers(records: Sequence[Mapping], seed: int = SEED) -> list[CustomerAction]:
    """What each decided ticket's customer does, in order (`records` as the round trip makes
    them: `ticket_id`, `channel_in`, `external_id`, `decision`, and `customer_email` for mail).
    Per ticket: maybe a reply (sometimes a repetition), then for a helpdesk ticket an agent solves
    it, the customer maybe rates it (lower after repeating themselves) and maybe reopens it by
    writing again. Mail has no statuses or ratings: only replies."""
    rng = random.Random(seed)
    actions: list[CustomerAction] = []
    for record in records:
        channel = record["channel_in"]
        if not record.get("decision") or channel not in CUSTOMER_CHANNELS:
            continue
        if channel == "email" and not record.get("customer_email"):
            continue

        def act(action: str, what: str, **fields: object) -> None:
            if channel == "email":
                fields["from"] = record["customer_email"]
            actions.append(CustomerAction(record["ticket_id"], channel, str(record["external_id"]), action, what,
                                          fields))

        repeated = False
        if rng.random() < REPLY_SHARE:
            repeated = rng.random() < REPETITION_SHARE
            act("reply", "repetition" if repeated else "follow_up",
                text=rng.choice(REPETITIONS if repeated else FOLLOW_UPS))
        if channel == "email":
            continue
        act("status", "solved", status=SOLVED_STATUS[channel])
        if rng.random() < RATE_SHARE:
            act("rate", "rating", score=_draw(rng, RATINGS[channel][1 if repeated else 0]))
        if rng.random() < REOPEN_SHARE:
            act("reply", "reopen", text=rng.choice(REOPENINGS))
    return actions


# (provider, the channel's ticket id, action, fields) -> what the stand-in fired: [{"event", "outcome"}]
Act = Callable[..., list[dict]]


def act_on_channels(act: Act, actions: Sequence[CustomerAction]) -> list[CustomerAction]:
    """Carry the actions out, in order, each waiting for the gateway's answer to the webhooks it
    fired (`act` is ChannelServers.outcome)."""
    for action in actions:
        fired = act(action.channel, action.external_id, action.action, **action.fields)
        action.answers = [(item["event"], item.get("outcome", {}).get("status", 0)) for item in fired]
    return actions


def csat_given(actions: Sequence[CustomerAction]) -> dict[str, list[float]]:
    """Pipeline ticket id -> the CSAT scores (0..100) of its ratings the gateway accepted, as the
    gateway's channel adapters read each helpdesk's scale: what the learner should count."""
    from services.gateway.channels import freshdesk, intercom, zendesk

    scales = {"zendesk": lambda score: zendesk.RATING_SCORES[score], "intercom": intercom.rating_score,
              "freshdesk": lambda score: freshdesk.SURVEY_SCORES[score]}
    given: dict[str, list[float]] = defaultdict(list)
    for action in actions:
        if action.action == "rate" and any(200 <= status < 300 for _, status in action.answers):
            given[action.ticket_id].append(scales[action.channel](action.fields["score"]))
    return dict(given)


def as_json(actions: Sequence[CustomerAction]) -> list[dict]:
    return [asdict(action) for action in actions]


def simulated_agent_feedback(records: Sequence[Mapping], notes_by_intent: Mapping[str, str],
                             seed: int = SEED) -> list[dict]:
    """The agents' feedback payloads for every decided ticket (`records` as `decision_record` makes
    them), in ticket order and each ticket's resolution last: a verdict on a review draft that
    cites articles, then the resolution. A RESPOND ticket is resolved by the bot; any other by an
    agent, who cites the draft's articles when the verdict kept the draft and writes the notes of
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


def format_outcomes(customers: Sequence[CustomerAction], records: Sequence[Mapping], payloads: Sequence[Mapping],
                    proposals: Sequence[ev.KbProposal], min_tickets: int) -> str:
    """The outcomes section of the demo's summary: what the simulated customers did on each
    channel and how the gateway answered, the simulated agents' feedback, and the KB proposals."""
    lines = [
        "Outcomes (SIMULATED customers and agents) and the knowledge loop",
        "----------------------------------------------------------------",
        "The demo's customers are simulated (seeded, tooling/demo_outcomes.py). They act on their tickets",
        "through their own channels' stand-ins, which call the gateway's webhooks as each provider would;",
        "the gateway turns those into outcome events. Per channel, what they did and the gateway's answers:",
    ]
    by_channel: dict[str, Counter] = defaultdict(Counter)
    answers: dict[str, Counter] = defaultdict(Counter)
    for action in customers:
        by_channel[action.channel][action.what] += 1
        for _, status in action.answers:
            answers[action.channel][status] += 1
    for channel in CUSTOMER_CHANNELS:
        done = by_channel.get(channel)
        if not done:
            continue
        replies = done["repetition"] + done["follow_up"]
        parts = [f"replies {replies} ({done['repetition']} saying they already explained it)"]
        if channel != "email":
            parts += [f"solved {done['solved']}", f"rated {done['rating']}", f"reopened {done['reopen']}"]
        statuses = ", ".join(f"{status} x{n}" for status, n in sorted(answers[channel].items()))
        lines.append(f"{channel:<10} " + ", ".join(parts) + f" | gateway answered {statuses or 'nothing'}")
    api = sum(1 for record in records if record.get("channel_in") == "api" and record.get("decision"))
    if api:
        lines.append(f"{'api':<10} {api} tickets: the API channel has no customer-facing helpdesk to act through")
    kinds = Counter(payload["kind"] for payload in payloads)
    lines += [
        f"The simulated agents gave {len(payloads)} feedback events through the gateway's feedback API "
        f"({', '.join(f'{kind} {n}' for kind, n in kinds.most_common())});",
        "their notes are the sample resolved case's for the ticket's intent.",
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
