"""The default drafter: extractive and template-based, so it cannot say anything the knowledge
base does not say.

It reads the retrieved passages as units (sentences, whole list items, table rows), scores each
against the ticket's problem statement and intent, and quotes the best few, each tied to its
source. Scoring is lexical overlap weighted by rarity, plus cosine similarity from the sentence
encoder when one is given; the retriever's best article is preferred (its rank is a prior), and a
question that asks for a fee, a time or a rate prefers units that state one. When the KB tags its
articles with the intents they answer, the articles tagged with the predicted intent are the ones
quoted (with the policy articles for figures). Units whose numbers
the policy ledger could not back are never picked. The rest of the reply comes from the tenant's
templates: greeting, what is still missing or uncertain, the next step, sign-off.

No usable evidence gives a NO_EVIDENCE holding reply that promises nothing.

When the ticket's investigation found something in the tenant's systems, the reply first states
what the customer's own records show: each available finding's summary, as the investigator wrote
it from the record (the findings bearing on the case type it settled first), then says when part
of the account could not be checked. Those lines are checked against the findings like any other
generator's (evidence_ledger.py).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk

from services.drafter.answer_checks import AnswerChecks, MissingFigureCheck, QuotedUnit, TenantAnswerChecks
from services.drafter.evidence_ledger import customer_findings
from services.drafter.lexical import content_words, idf_weights, named_words, weighted_coverage
from services.drafter.passage_units import PassageUnit, passage_units, procedures
from services.drafter.policy_ledger import PassageBacking, quantities
from services.drafter.products import ProductNames
from services.drafter.reply import DraftInput, ReplyParts, Sentence, SourceRef, channel_name
from services.drafter.templates import ReplyTemplate, TemplateBook, join_items

MAX_QUERY_CHARS = 2000
# A second unit must score at least this share of the best one to be quoted as well.
COMPANION_SHARE = 0.6
# Units of another article than the best one must clear a higher bar: one article reads better.
OTHER_ARTICLE_SHARE = 0.8
# A passage the retriever scores under this share of its best passage (internal ones included) is
# off the question: quoting it because it shares a word or two reads as a wrong answer. When the
# only good match is an internal article, the reply is a holding one and an agent takes over.
MIN_EVIDENCE_SHARE = 0.6
ARTICLE_RANK_DECAY = 0.15  # prior = 1 / (1 + decay * rank): a hint, the sentence's own fit decides
LEXICAL_WEIGHT = 0.55  # with an encoder; the cosine gets the rest
# A unit is relevant when it shares two words with the question and covers a tenth of its weight,
# or (with an encoder) when its cosine similarity reaches the level the retriever treats as a match.
MIN_LEXICAL = 0.1
MIN_SHARED_WORDS = 2  # one shared word ("pay") is a coincidence, not an answer
MIN_COSINE = 0.35
EMBEDDING_CACHE_SIZE = 50_000  # unit texts; 384 float32 each, about 75 MB when full
LOW_CONFIDENCE = 0.5  # classifier confidence under which the reply asks to be corrected
NEAR_DUPLICATE = 0.6  # Jaccard overlap of content words above which two number-free units say the same
RELATED = 0.1  # overlap above which a unit restating numbers already quoted adds nothing
MAX_EVIDENCE_LINES = 3  # findings stated in a reply; the agent sees all of them in the packet

_WANTS = (
    (re.compile(r"\bhow much\b|\bfees?\b|\bcharge|\bcost|\bprice|\bpay\b|\bamount|[$€£]", re.I), {"USD", "EUR", "GBP"}),
    (re.compile(r"\blimit|\bmaximum|\bminimum|\bup to\b|\bat most\b|\bcap\b", re.I), {"USD", "EUR", "GBP", "count"}),
    (re.compile(r"\bhow long\b|\bwhen\b|\bdays?\b|\bweeks?\b|\bhours?\b|\btake\b|\bwait|\bdeadline|\bwindow\b|\bquick|\bsoon\b|\bfast\b", re.I), {"second", "minute", "hour", "day", "week", "month", "time"}),
    (re.compile(r"\brate\b|\binterest|\bapy\b|\bapr\b|\bpercent|%|\bcash ?back|\byield", re.I), {"percent", "multiplier"}),
    (re.compile(r"\bhow many\b|\bnumber of\b|\bhow often\b", re.I), {"count"}),
    (re.compile(r"\bage\b|\bhow old\b|\byears old\b|\bminor\b|\bteen", re.I), {"age", "year"}),
)


class TextEncoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class ScoredUnit:
    unit: PassageUnit
    score: float
    article_rank: int
    # A unit whose figures its own (non-canonical) article cannot back, but the tenant's canonical
    # policy passage in the evidence can: that passage's index and the lines that back it. The
    # reply cites both, so the policy ledger verifies the figures where they are canonical.
    backed_by: int | None = None
    backing: tuple[str, ...] = ()
    # A step of a numbered list: every step of that list, in order (this one among them). Quoted
    # whole where it fits: "Open the app and tap Add money." alone leaves the customer stuck.
    procedure: tuple["ScoredUnit", ...] = ()


def problem_text(request: DraftInput) -> str:
    text = request.normalized.problem_statement.strip()
    if not text:
        text = f"{request.ticket.subject}\n{request.ticket.body}".strip()
    return text[:MAX_QUERY_CHARS]


def intent_words(intent: str) -> str:
    return re.sub(r"[_?]+", " ", intent).strip()


def wanted_units(question: str) -> set[str]:
    wanted: set[str] = set()
    for pattern, units in _WANTS:
        if pattern.search(question):
            wanted |= units
    return wanted


def is_agent_facing(passage: tk.EvidencePassage) -> bool:
    """Internal articles are written for staff; an extractive reply would quote them verbatim."""
    return passage.source == "internal_policy" or bool(re.search(r"\binternal\b", passage.title, re.I))


class OfflineDrafter:
    name = "offline"

    def __init__(
        self, templates: TemplateBook, encoder: TextEncoder | None = None, *, cache_size: int = EMBEDDING_CACHE_SIZE,
        checks: TenantAnswerChecks | None = None,
    ) -> None:
        self._templates = templates
        self._encoder = encoder
        # Each tenant's answer checks (its words, its product catalogue); the defaults without one.
        self._checks = checks if checks is not None else TenantAnswerChecks()
        # KB units recur from ticket to ticket: embed each once (bounded, least recently used out).
        self._embeddings: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def generate(self, request: DraftInput) -> ReplyParts:
        template = self._templates.for_reply(request.ticket.tenant_id, channel_name(request.ticket.channel))
        scored = self.score_units(request)
        if not scored:
            return with_account_evidence(holding_reply(request, template, self.name), request, template)
        chosen = select_units(scored, template.max_sentences, template.max_chars)
        checks = self._checks.for_tenant(request.ticket.tenant_id)
        judged, reason = answerability(problem_text(request), chosen, request.evidence, checks)
        reply = compose_reply(request, template, chosen, self.name).replace(
            answerability=judged, answerability_reason=reason
        )
        return with_account_evidence(reply, request, template)

    def score_units(self, request: DraftInput) -> list[ScoredUnit]:
        """Every quotable unit of the evidence that bears on the question, best first."""
        evidence = request.evidence
        ranks: dict[str, int] = {}
        for passage in evidence:
            ranks.setdefault(passage.article_id, len(ranks))
        units = []
        backers: dict[tuple[int, int], tuple[int, tuple[str, ...]]] = {}  # (passage, order) -> canonical backing
        best_score = max((passage.score for passage in evidence), default=0.0)
        answering = written_for(request.classification.intent, evidence)
        canonical = [(i, PassageBacking(p)) for i, p in enumerate(evidence) if p.is_policy and not is_agent_facing(p)]
        for index, passage in enumerate(evidence):
            off_question = passage.score < MIN_EVIDENCE_SHARE * best_score and index not in answering
            if is_agent_facing(passage) or off_question or index in request.backing_only:
                continue
            backing = PassageBacking(passage)
            for unit in passage_units(passage, index):
                if backing.backs(unit.text):
                    units.append(unit)
                    continue
                # A figure an article repeats from the policy article: quoted with the policy as its backing.
                for policy_index, policy in canonical:
                    lines = policy.backing_lines(unit.text) if policy_index != index else ()
                    if lines:
                        units.append(unit)
                        backers[(unit.passage, unit.order)] = (policy_index, lines)
                        break
        if not units:
            return []
        question = problem_text(request)
        # A bullet's heading is part of what it says ("Outgoing wire fees" / "Domestic: $10.00").
        unit_words = [content_words(f"{unit.section} {unit.text}") for unit in units]
        context_words = [content_words(f"{evidence[u.passage].title} {u.context}") for u in units]
        idf = idf_weights([set(w) | set(c) for w, c in zip(unit_words, context_words)])
        # A question word no unit contains is the part of the question the evidence leaves open:
        # it weighs as much as an average word, not nothing.
        unseen = sum(idf.values()) / len(idf) if idf else 1.0
        query: dict[str, float] = {}
        for word in content_words(question):
            query[word] = idf.get(word, unseen)
        for word in content_words(intent_words(request.classification.intent)):
            query[word] = max(query.get(word, 0.0), 0.5 * idf.get(word, unseen))
        lexical = [
            0.75 * weighted_coverage(query, words) + 0.25 * weighted_coverage(query, context)
            for words, context in zip(unit_words, context_words)
        ]
        cosine = self._cosines(question, units, evidence)
        wanted = wanted_units(question)
        needed = min(MIN_SHARED_WORDS, len(query))
        on_topic = _passages_naming(named_words(question), evidence)
        names = self._checks.for_tenant(request.ticket.tenant_id).products
        products = names.named(question)
        titled = {i for i, p in enumerate(evidence) if any(names.is_about(name, p.title, p.section) for name in products)}
        if titled:  # the named product's own articles, not others that mention it in passing
            on_topic = (on_topic & titled) or titled
        if answering:  # the articles the KB's authors wrote for this intent, and its policy for figures
            on_topic = (on_topic & answering) or answering
            on_topic |= {i for i, p in enumerate(evidence) if p.is_policy}
        steps = procedures(units)
        scored = []
        for position, unit in enumerate(units):
            if unit.passage not in on_topic:
                continue
            if products and not _about_asked_product(unit.text, products, names):
                continue  # a line on another product, even in the asked product's article
            similarity = cosine[position] if cosine is not None else 0.0
            shared = len(query.keys() & (set(unit_words[position]) | set(context_words[position])))
            if (lexical[position] < MIN_LEXICAL or shared < needed) and similarity < MIN_COSINE \
                    and unit.passage not in answering:
                continue
            score = lexical[position]
            if cosine is not None:
                score = LEXICAL_WEIGHT * score + (1 - LEXICAL_WEIGHT) * max(similarity, 0.0)
            if wanted:
                states = {q.unit for q in quantities(unit.text, strict=False)}
                score *= 1.2 if states & wanted else 0.85
            if unit.from_table:
                score *= 0.9  # the same fact usually exists as a sentence, which reads better
            rank = ranks[evidence[unit.passage].article_id]
            score /= 1 + ARTICLE_RANK_DECAY * rank
            backer, lines = backers.get((unit.passage, unit.order), (None, ()))
            procedure = tuple(ScoredUnit(step, score, rank, *backers.get((step.passage, step.order), (None, ())))
                              for step in steps.get((unit.passage, unit.order), ()))
            scored.append(ScoredUnit(unit, score, rank, backer, lines, procedure))
        scored.sort(key=lambda s: (-s.score, s.article_rank, s.unit.passage, s.unit.order))
        return scored

    def _cosines(self, question: str, units: Sequence[PassageUnit], evidence: Sequence[tk.EvidencePassage]) -> list[float] | None:
        if self._encoder is None:
            return None
        texts = [f"{evidence[u.passage].title}: {u.context} {u.text}".strip() for u in units]
        with self._lock:  # one cache; encoding is CPU-bound anyway
            missing = list(dict.fromkeys(t for t in texts if t not in self._embeddings))
            fresh = self._encoder.encode([question, *missing])
            for text, vector in zip(missing, fresh[1:]):
                self._embeddings[text] = vector
            vectors = [self._embeddings[text] for text in texts]
            for text in texts:
                self._embeddings.move_to_end(text)
            while len(self._embeddings) > self._cache_size:
                self._embeddings.popitem(last=False)
        return [float(v) for v in np.stack(vectors) @ fresh[0]]


def quoted_units(chosen: Sequence[ScoredUnit], evidence: Sequence[tk.EvidencePassage]) -> list[QuotedUnit]:
    """What each chosen unit says and what it stands under: its section heading, its article title."""
    return [QuotedUnit(item.unit.text, item.unit.section, evidence[item.unit.passage].title) for item in chosen]


_DEFAULT_CHECKS = TenantAnswerChecks()


def answerability(
    question: str, chosen: Sequence[ScoredUnit], evidence: Sequence[tk.EvidencePassage],
    checks: AnswerChecks | None = None,
) -> tuple[int, str]:
    """NOT_ANSWERED, with the first objection of the tenant's answer checks (answer_checks.py), run
    in order: the question names a product and no quoted article is about it; the question moves
    money one way and the reply only quotes units about the other way; the question waits for
    something and no quoted unit says a word about delivery, timing or status; the question asks how
    much or how long and no quoted unit gives such a figure; the question asks how to do something
    and no quoted unit tells the reader to do it. Otherwise UNSPECIFIED: shared words prove no
    answer."""
    checks = checks if checks is not None else _DEFAULT_CHECKS.for_tenant("")
    reason = checks.first_objection(question, quoted_units(chosen, evidence))
    if reason is None:
        return tk.ANSWERABILITY_UNSPECIFIED, ""
    return tk.ANSWERABILITY_NOT_ANSWERED, reason


def missing_figure(question: str, chosen: Sequence[ScoredUnit]) -> str:
    """What the question asks a figure of ("an amount", "a time") when no quoted unit gives one;
    otherwise ""."""
    return MissingFigureCheck.missing(question, [QuotedUnit(item.unit.text) for item in chosen])


def _about_asked_product(text: str, asked: Sequence[str], names: ProductNames) -> bool:
    """False when `text` names products and none of them is one the question asks about ("Crypto
    Cash Back Card: +0.15%" quoted for "What cash back does the Diamond Elite card give?")."""
    named = names.named(text)
    return not named or any(names.is_about(product, text) for product in asked)


def written_for(intent: str, evidence: Sequence[tk.EvidencePassage]) -> set[int]:
    """Passages of articles their authors tagged with the ticket's predicted intent (help-center
    labels): on the question by the KB's own account, however they are worded. When there are
    some, the reply quotes them (and the policy articles, for figures) rather than passages that
    merely share words with the question. Empty for an untagged KB: it is drafted as before."""
    if not intent:
        return set()
    return {index for index, passage in enumerate(evidence) if intent in passage.intents}


def _passages_naming(names: set[str], evidence: Sequence[tk.EvidencePassage]) -> set[int]:
    """Passages to draw from: when the question names something ("Purple Account") and some
    passages mention every name, only those; otherwise all of them."""
    everything = set(range(len(evidence)))
    if not names:
        return everything
    naming = {
        index
        for index, passage in enumerate(evidence)
        if names <= set(content_words(f"{passage.title} {passage.section} {passage.text}"))
    }
    return naming or everything


def _quantity_keys(unit: PassageUnit) -> set[tuple[str, float]]:
    return {(q.unit, q.value) for q in quantities(unit.text, strict=False)}


def _jaccard(first: PassageUnit, second: PassageUnit) -> float:
    a, b = set(content_words(first.text)), set(content_words(second.text))
    return len(a & b) / len(a | b) if a and b else 0.0


def redundant(candidate: PassageUnit, chosen: Sequence[PassageUnit]) -> bool:
    """Whether `candidate` only repeats what the chosen units already say.

    Numbers decide for units that state them: "Within 60 days: maximum $500" is not a repeat of
    "Within 2 business days: maximum $50" however alike the words, while a table row restating a
    bullet's "$2.50" is.
    """
    keys = _quantity_keys(candidate)
    if keys:
        related = set()
        for unit in chosen:
            if _jaccard(candidate, unit) >= RELATED:
                related |= _quantity_keys(unit)
        return keys <= related
    return any(_jaccard(candidate, unit) >= NEAR_DUPLICATE for unit in chosen)


def select_units(scored: Sequence[ScoredUnit], max_sentences: int, max_chars: int) -> list[ScoredUnit]:
    """The best unit, then companions that add to it, the best article's first; document order. A
    step brings its whole procedure when that fits, else the steps before it when those fit (the
    procedure counts as one sentence)."""
    best = scored[0]
    budget = int(max_chars * 0.6)
    chosen: list[ScoredUnit] = []
    taken: set[tuple[int, int]] = set()
    used = slots = 0

    def fits(items: list[ScoredUnit]) -> bool:
        return bool(items) and used + sum(len(item.unit.text) for item in items) <= budget

    def take(candidate: ScoredUnit) -> None:
        nonlocal used, slots
        slots += 1
        whole = [step for step in candidate.procedure if (step.unit.passage, step.unit.order) not in taken]
        if not fits(whole):  # the steps up to this one, at least: step 3 is of no use without 1 and 2
            whole = [step for step in whole if step.unit.order <= candidate.unit.order]
        if not fits(whole):
            whole = [candidate]
        for item in whole:
            chosen.append(item)
            taken.add((item.unit.passage, item.unit.order))
            used += len(item.unit.text)

    take(best)
    for candidate in scored[1:]:
        if slots >= max_sentences:
            break
        if (candidate.unit.passage, candidate.unit.order) in taken:
            continue
        bar = COMPANION_SHARE if candidate.article_rank == best.article_rank else OTHER_ARTICLE_SHARE
        if candidate.score < bar * best.score:
            continue
        if used + len(candidate.unit.text) > budget:
            continue
        if redundant(candidate.unit, [c.unit for c in chosen]):
            continue
        take(candidate)
    return sorted(chosen, key=lambda s: (s.article_rank, s.unit.passage, s.unit.order))


def _uncertainties(request: DraftInput, template: ReplyTemplate, cited: Sequence[tk.EvidencePassage]) -> list[str]:
    lines = []
    missing = [template.identifier_name(kind) for kind in request.normalized.missing_identifiers]
    if missing:
        lines.append(template.missing_identifiers.format(items=join_items(missing, "or")))
    if any(passage.stale for passage in cited):
        lines.append(template.stale)
    classification = request.classification
    if not missing and classification.archetype == tk.ARCHETYPE_ACCOUNT_SPECIFIC:
        lines.append(template.account_specific)
    if 0 < classification.confidence < LOW_CONFIDENCE:
        lines.append(template.low_confidence)
    return lines


def _follow_ups(request: DraftInput, template: ReplyTemplate) -> tuple[str, ...]:
    """One question for what is missing: the kinds the classifier lists are alternatives (any one
    finds the transaction), so the customer is asked for whichever they have, not for each."""
    missing = [template.identifier_name(kind) for kind in request.normalized.missing_identifiers]
    return (template.follow_up_question.format(item=join_items(missing, "or")),) if missing else ()


def compose_reply(request: DraftInput, template: ReplyTemplate, chosen: Sequence[ScoredUnit], generator: str) -> ReplyParts:
    sources: list[SourceRef] = []
    index_of: dict[int, int] = {}
    quoted: dict[int, list[str]] = {}
    sentences = []
    for item in chosen:
        unit = item.unit
        cites = [(unit.passage, (unit.source_text,))]
        if item.backed_by is not None:
            cites.append((item.backed_by, item.backing))
        for passage_index, texts in cites:
            if passage_index not in index_of:
                index_of[passage_index] = len(index_of)
                quoted[passage_index] = []
            quoted[passage_index] += [text for text in texts if text not in quoted[passage_index]]
        sentences.append(Sentence(unit.text, tuple(index_of[i] for i, _ in cites), bullet=unit.bullet or unit.from_table))
    for passage_index in index_of:
        sources.append(SourceRef(request.evidence[passage_index], tuple(quoted[passage_index])))
    cited = [ref.passage for ref in sources]
    missing = [template.identifier_name(kind) for kind in request.normalized.missing_identifiers]
    return ReplyParts(
        status=tk.DRAFT_STATUS_READY,
        generator=generator,
        greeting=template.greeting,
        lead_in=template.lead_in,
        answer=tuple(sentences),
        uncertainties=tuple(_uncertainties(request, template, cited)[: 1 if not template.bullets else 2]),
        follow_up_questions=_follow_ups(request, template),
        ask_questions=False,  # the uncertainty line already says what is missing
        next_step=template.next_step_missing.format(items=join_items(missing)) if missing else template.next_step,
        closing=template.closing,
        sources=tuple(sources),
        bullets=template.bullets,
        show_sources=template.show_sources,
        sources_heading=template.sources_heading,
        max_chars=template.max_chars,
    )


def holding_reply(request: DraftInput, template: ReplyTemplate, generator: str) -> ReplyParts:
    missing = [template.identifier_name(kind) for kind in request.normalized.missing_identifiers]
    uncertainties = [template.missing_identifiers.format(items=join_items(missing, "or"))] if missing else []
    return ReplyParts(
        status=tk.DRAFT_STATUS_NO_EVIDENCE,
        generator=generator,
        greeting=template.greeting,
        holding=template.holding,
        uncertainties=tuple(uncertainties),
        follow_up_questions=_follow_ups(request, template),
        ask_questions=False,
        next_step=template.next_step_missing.format(items=join_items(missing)) if missing else template.holding_next_step,
        closing=template.closing,
        bullets=template.bullets,
        show_sources=False,
        max_chars=template.max_chars,
    )


def stated_findings(investigation: ev.Investigation) -> list[ev.Finding]:
    """The findings worth telling the customer: where the investigation settled the case, its
    conclusion (the settling rule's sentence, which quotes the records it rests on; the records'
    own summaries would say the same again), else those that bear on it (an unrelated incident or
    the account's tier would only distract); otherwise every one the customer may be told, for the
    agent to weigh."""
    told = customer_findings(investigation)
    settled = investigation.case_type
    bearing = [f for f in told if settled != ev.CASE_TYPE_UNSPECIFIED and settled in f.supports]
    return [f for f in bearing if f.concludes] or bearing or told


def with_account_evidence(parts: ReplyParts, request: DraftInput, template: ReplyTemplate) -> ReplyParts:
    """`parts` with what the customer's records show said first; unchanged without findings."""
    investigation = request.investigation
    stated = stated_findings(investigation)[:MAX_EVIDENCE_LINES]
    if not stated:
        return parts
    # The account was looked at: "I can't see your account" would now be untrue.
    uncertainties = [line for line in parts.uncertainties if line != template.account_specific]
    if any(not finding.available for finding in investigation.findings) or 0 < investigation.completeness < 1:
        uncertainties.insert(0, template.evidence_partial)
    return parts.replace(
        evidence_lead_in=template.evidence_lead_in,
        evidence=tuple(finding.summary.strip() for finding in stated),
        findings=tuple(customer_findings(investigation)),
        uncertainties=tuple(uncertainties),
    )
