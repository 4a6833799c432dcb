"""draft_reply: whatever the generator writes passes the overreach guard, then the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.drafter.drafting import draft_reply
from services.drafter.reply import DraftInput, ReplyParts, Sentence, SourceRef

FEES = tk.EvidencePassage(
    article_id="fees-1", chunk_id="fees-1#0", title="Card fees", is_policy=True,
    text="- The card replacement fee is $5.00.\n- Replacement cards arrive within 7 business days.",
)
LIMITS = tk.EvidencePassage(
    article_id="limits-1", chunk_id="limits-1#0", title="Transfer limits", is_policy=True,
    text="- Your daily transfer limit is $1,500.",
)


@dataclass
class ScriptedGenerator:
    """Returns fixed reply parts, as a model might: the guards must cope with anything."""

    sentences: tuple[Sentence, ...]
    name: str = "scripted"
    next_step: str = "Reply if anything is unclear."

    def generate(self, request: DraftInput) -> ReplyParts:
        return ReplyParts(
            status=tk.DRAFT_STATUS_READY if request.evidence else tk.DRAFT_STATUS_NO_EVIDENCE,
            generator=self.name,
            greeting="Hello,",
            answer=self.sentences,
            next_step=self.next_step,
            sources=tuple(SourceRef(p) for p in request.evidence),
            bullets=True,
            max_chars=2000,
        )


def run(generator: ScriptedGenerator, *, executed: frozenset[str] = frozenset(), evidence=(FEES, LIMITS)) -> tk.Draft:
    return draft_reply(
        tk.Ticket(ticket_id="t-9", tenant_id="rho-bank", body="My card is broken, send a new one. Call me on 07700 900123."),
        tk.NormalizedTicket(problem_statement="Card broken, wants a replacement"),
        tk.Classification(intent="card_not_working", confidence=0.9, route=tk.ROUTE_AUTO_RESPOND),
        list(evidence),
        generator=generator,
        executed_actions=executed,
    )


def test_a_grounded_reply_is_ready_with_renumbered_citations() -> None:
    result = run(ScriptedGenerator((Sentence("A replacement card costs $5.00.", (0,)), Sentence("It arrives within 7 business days.", (0,)))))
    assert result.status == tk.DRAFT_STATUS_READY
    assert "A replacement card costs $5.00 [1]." in result.text
    assert [c.article_id for c in result.citations] == ["fees-1"]  # LIMITS was retrieved but not used
    assert len(result.ledger) == 2 and all(c.verified for c in result.ledger)
    assert result.grounding > 0.5
    assert result.next_step == "Reply if anything is unclear."


def test_overreach_is_rewritten_before_the_ledger_sees_its_numbers() -> None:
    result = run(
        ScriptedGenerator((Sentence("I have ordered your new card and refunded the $25 fee.", (0,)), Sentence("A replacement card costs $5.00.", (0,))))
    )
    assert result.status == tk.DRAFT_STATUS_READY
    assert "$25" not in result.text and "ordered" not in result.text
    assert "once you confirm" in result.text
    assert all(c.verified for c in result.ledger)  # "$25" never reached the ledger


def test_an_executed_action_is_kept() -> None:
    result = run(ScriptedGenerator((Sentence("Your refund has been issued.", (0,)),)), executed=frozenset({"refund"}))
    assert "Your refund has been issued" in result.text


def test_a_removed_citation_disappears_and_numbering_follows() -> None:
    result = run(
        ScriptedGenerator((
            Sentence("Your daily transfer limit is $2,000.", (1,)),  # invented: LIMITS says $1,500
            Sentence("A replacement card costs $5.00.", (0,)),
            Sentence("It arrives within 7 business days.", (0,)),
        ))
    )
    assert result.status == tk.DRAFT_STATUS_READY
    assert "$2,000" not in result.text
    assert [c.article_id for c in result.citations] == ["fees-1"]
    assert "[2]" not in result.text
    assert [c.verified for c in result.ledger] == [False, True, True]


def test_invented_policy_blocks_the_draft_and_empties_it() -> None:
    blocked_before = REGISTRY.get_sample_value("supportflow_drafter_drafts_total", {"generator": "offline", "status": "blocked"}) or 0.0
    result = run(ScriptedGenerator((Sentence("Replacement is free and takes 2 days.", (0,)),), name="offline"))
    assert result.status == tk.DRAFT_STATUS_BLOCKED
    assert result.text == ""
    assert "2 days" in result.block_reason
    after = REGISTRY.get_sample_value("supportflow_drafter_drafts_total", {"generator": "offline", "status": "blocked"})
    assert after == blocked_before + 1


def test_no_evidence_status_is_kept() -> None:
    result = run(ScriptedGenerator(()), evidence=())
    assert result.status == tk.DRAFT_STATUS_NO_EVIDENCE
    assert result.grounding == 0.0
