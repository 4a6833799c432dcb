"""Account evidence in drafts: what the investigation found is stated, every fact of it checked
against the findings (a wrong amount, date, status or reference is caught), and recorded in the
ledger; the overreach guard still stops claims of actions that did not run."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.topics import Topic

from services.drafter.drafting import draft_reply
from services.drafter.evidence_ledger import EVIDENCE_KIND, check_evidence_facts, facts_in
from services.drafter.handlers import TicketDrafter
from services.drafter.offline import OfflineDrafter
from services.drafter.reply import DraftInput, ReplyParts, Sentence, SourceRef
from services.drafter.templates import TemplateBook

TRANSFER = ev.Finding(
    source="transactions", lookup="recent_transfers", record_id="TRF-88213", available=True,
    summary="The transfer of 120.00 GBP to J. Smith on 3 December is held for a new-payee check.",
    facts={"amount": "120.00", "currency": "GBP", "status": "held", "date": "2026-12-03",
           "hold_reason": "new_payee_check"},
    supports=[ev.CASE_TYPE_EXPECTED_BEHAVIOUR], rejects=[ev.CASE_TYPE_PRODUCT_DEFECT],
    observed_at=Timestamp(seconds=1_796_290_320),  # 2026-12-03T09:32:00Z
)
TOP_UP = ev.Finding(
    source="transactions", lookup="recent_top_ups", record_id="TOP-5521", available=True,
    summary="A top-up of 40.00 GBP on 4 December is pending.",
    facts={"amount": "40.00", "status": "pending", "date": "2026-12-04"},
)
EVENTS_DOWN = ev.Finding(source="product_events", lookup="declines", available=False,
                         unavailable_reason="timed out after 1.5 s")
INVESTIGATION = ev.Investigation(playbook="transfer_pending", findings=[TRANSFER, TOP_UP],
                                 case_type=ev.CASE_TYPE_EXPECTED_BEHAVIOUR, completeness=1.0)
TRANSFER_TIMES = tk.EvidencePassage(
    article_id="transfers-1", chunk_id="transfers-1#0", title="Pending transfers", is_policy=True, score=0.9,
    text="- A transfer to a new payee can be held for a security check before it is sent.\n"
         "- Most held transfers are released within 2 business days.",
)


def evidence_parts(*lines: str, findings=(TRANSFER, TOP_UP)) -> ReplyParts:
    return ReplyParts(status=tk.DRAFT_STATUS_READY, generator="test", evidence=lines, findings=tuple(findings),
                      evidence_lead_in="On your account:")


def test_facts_are_read_as_a_reader_would_act_on_them() -> None:
    facts = facts_in("The transfer TRF-88213 of £1,250.50 on 3rd December at 09:32 is held.", {"held"})
    assert [(f.kind, f.key) for f in facts] == [
        ("date", "12-03"), ("time", "09:32"), ("reference", "trf-88213"), ("amount", "1250.5"), ("status", "held")]


def test_a_line_the_finding_carries_is_verified_and_recorded_in_the_ledger() -> None:
    outcome = check_evidence_facts(evidence_parts("Your transfer of 120 GBP on December 3rd (TRF-88213) is held."))
    assert not outcome.blocked and outcome.removed == ()
    assert outcome.parts.evidence == ("Your transfer of 120 GBP on December 3rd (TRF-88213) is held.",)
    assert {(c.kind, c.article_id, c.passage, c.verified) for c in outcome.ledger} == {
        (EVIDENCE_KIND, "TRF-88213", TRANSFER.summary, True)}
    assert len(outcome.ledger) == 4  # amount, date, reference, status


def test_a_wrong_amount_is_caught_and_blocks_a_draft_with_nothing_else_to_say() -> None:
    outcome = check_evidence_facts(evidence_parts("The transfer of 150.00 GBP on 3 December is held."))
    assert outcome.blocked and outcome.parts.evidence == () and outcome.parts.evidence_lead_in == ""
    wrong = [c for c in outcome.ledger if not c.verified]
    assert [c.claim.split(":")[0] for c in wrong] == ["amount 150.00"]
    assert "150.00" in outcome.block_reason


def test_a_wrong_date_status_or_reference_is_caught_and_the_line_removed() -> None:
    good = "A top-up of 40.00 GBP on 4 December is pending."
    for wrong in ("The transfer of 120.00 GBP on 5 December is held.",       # date
                  "The transfer of 120.00 GBP on 3 December is pending.",    # status of another record
                  "The transfer TRF-99999 of 120.00 GBP is held."):          # reference
        outcome = check_evidence_facts(evidence_parts(good, wrong, good))
        assert outcome.removed == (wrong,) and outcome.parts.evidence == (good, good), wrong
        assert not outcome.blocked  # one line of three went: the rest stands
        assert any(not c.verified for c in outcome.ledger)


def test_nothing_about_the_account_may_be_said_without_an_available_finding() -> None:
    outcome = check_evidence_facts(evidence_parts("Your account looks fine.", findings=(EVENTS_DOWN,)))
    assert outcome.blocked and outcome.parts.evidence == ()


@dataclass
class ScriptedEvidence:
    """A generator that states evidence lines of its own (as a model might), and one answer."""

    lines: tuple[str, ...]
    answer: tuple[Sentence, ...] = (Sentence("Most held transfers are released within 2 business days.", (0,)),)
    name: str = "scripted"

    def generate(self, request: DraftInput) -> ReplyParts:
        return ReplyParts(
            status=tk.DRAFT_STATUS_READY, generator=self.name, greeting="Hello,", evidence=self.lines,
            findings=tuple(request.investigation.findings), answer=self.answer,
            sources=tuple(SourceRef(p) for p in request.evidence), bullets=True, max_chars=2000,
        )


def drafted(generator, investigation=INVESTIGATION, executed=frozenset()) -> tk.Draft:
    return draft_reply(
        tk.Ticket(ticket_id="t-1", tenant_id="rho-bank", channel=tk.CHANNEL_EMAIL,
                  body="My transfer to John from Wednesday still hasn't gone through, what's going on?"),
        tk.NormalizedTicket(problem_statement="A transfer to a new payee is still pending"),
        tk.Classification(intent="pending_transfer", confidence=0.9, route=tk.ROUTE_DRAFT_FOR_REVIEW,
                          archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC),
        [TRANSFER_TIMES], generator=generator, executed_actions=executed, investigation=investigation,
    )


def test_the_offline_draft_states_what_the_records_show_before_the_help_center_answer() -> None:
    draft = drafted(OfflineDrafter(TemplateBook.load()))
    assert draft.status == tk.DRAFT_STATUS_READY
    text = draft.text
    assert "Here is what I can see on your account:" in text
    assert TRANSFER.summary in text and text.index(TRANSFER.summary) < text.index("held for a security check")
    assert "can't see your account" not in text  # the account was looked at
    evidence = [c for c in draft.ledger if c.kind == EVIDENCE_KIND]
    assert evidence and all(c.verified for c in evidence)
    # The case is settled on the transfer: the pending top-up bears on nothing the customer asked.
    assert {c.article_id for c in evidence} == {"TRF-88213"} and TOP_UP.summary not in text
    assert all(c.verified for c in draft.ledger)
    # Where nothing is settled, every finding the customer may be told is stated, for the agent to weigh.
    unsettled = ev.Investigation(findings=[TRANSFER, TOP_UP], completeness=1.0)
    both = drafted(OfflineDrafter(TemplateBook.load()), unsettled)
    assert {c.article_id for c in both.ledger if c.kind == EVIDENCE_KIND} == {"TRF-88213", "TOP-5521"}


DEPLOY = ev.Finding(source="changes", lookup="change", record_id="chg-41", available=True, internal=True,
                    summary="Change on 2026-12-02: card authorisation service 4.12 deployed.",
                    facts={"description": "card authorisation service 4.12 deployed", "date": "2026-12-02"},
                    supports=[ev.CASE_TYPE_EXPECTED_BEHAVIOUR])


def test_a_settled_case_is_told_by_its_conclusion_not_by_every_record_it_rests_on() -> None:
    """The rule's sentence quotes the transfer; the account's own line and the transfer's plain
    summary would only say it again."""
    account = ev.Finding(source="account", lookup="customer", record_id="cust-1", available=True,
                         summary="The account is active.", facts={"status": "active"},
                         supports=[ev.CASE_TYPE_EXPECTED_BEHAVIOUR])
    plain, concluded = ev.Finding(), ev.Finding()
    plain.CopyFrom(TRANSFER)
    plain.summary = "The transfer of 120.00 GBP on 3 December is held."
    concluded.CopyFrom(TRANSFER)
    concluded.concludes = True
    for transfer, stated in ((concluded, [TRANSFER.summary]),
                             (plain, ["The account is active.", "The transfer of 120.00 GBP on 3 December is held."])):
        investigation = ev.Investigation(findings=[account, transfer], completeness=1.0,
                                         case_type=ev.CASE_TYPE_EXPECTED_BEHAVIOUR)
        text = drafted(OfflineDrafter(TemplateBook.load()), investigation).text
        assert [line for line in stated if line in text] == stated
        assert ("The account is active." in text) == (transfer is plain)


@pytest.mark.parametrize("generator", ["offline", "scripted"])
def test_an_internal_finding_is_never_stated_to_the_customer_nor_backs_a_line(generator) -> None:
    """The bank's own deploy bears on the case, but it is for the agents: the packet carries it, a
    reply never does, and a line that only it could back is removed."""
    investigation = ev.Investigation(findings=[TRANSFER, DEPLOY], completeness=1.0,
                                     case_type=ev.CASE_TYPE_EXPECTED_BEHAVIOUR)
    chosen = (OfflineDrafter(TemplateBook.load()) if generator == "offline"
              else ScriptedEvidence((TRANSFER.summary, DEPLOY.summary)))
    draft = drafted(chosen, investigation)
    assert TRANSFER.summary in draft.text and "4.12" not in draft.text and "2026-12-02" not in draft.text
    assert {c.article_id for c in draft.ledger if c.kind == EVIDENCE_KIND and c.verified} == {"TRF-88213"}


def test_the_offline_draft_says_when_part_of_the_account_could_not_be_checked() -> None:
    partial = ev.Investigation(findings=[TRANSFER, EVENTS_DOWN], completeness=0.5)
    text = drafted(OfflineDrafter(TemplateBook.load()), partial).text
    assert TRANSFER.summary in text and "couldn't check everything on your account" in text
    without = drafted(OfflineDrafter(TemplateBook.load()), ev.Investigation()).text
    assert "can't see your account from here" in without and "what I can see" not in without


def test_a_generator_stating_a_wrong_amount_gets_a_blocked_draft() -> None:
    draft = drafted(ScriptedEvidence(("Your transfer of 210.00 GBP on 3 December is held.",)))
    assert draft.status == tk.DRAFT_STATUS_BLOCKED and draft.text == ""
    assert "210.00" in draft.block_reason
    assert [c.verified for c in draft.ledger if c.kind == EVIDENCE_KIND].count(False) == 1


def test_an_account_figure_slipped_into_the_answer_is_removed_by_the_policy_ledger() -> None:
    answer = (Sentence("Most held transfers are released within 2 business days.", (0,)),
              Sentence("Your 120.00 GBP transfer will be released tomorrow.", (0,)),
              Sentence("A transfer to a new payee can be held for a security check before it is sent.", (0,)))
    draft = drafted(ScriptedEvidence(("The transfer of 120.00 GBP on 3 December is held.",), answer))
    assert draft.status == tk.DRAFT_STATUS_READY and "released tomorrow" not in draft.text
    assert "The transfer of 120.00 GBP on 3 December is held." in draft.text


def test_a_claimed_action_that_did_not_run_stays_stopped_while_a_recorded_state_may_be_said() -> None:
    frozen = ev.Finding(source="account", lookup="cards", record_id="card-77", available=True,
                        summary="The card ending 1234 is frozen since 2 December.",
                        facts={"last4": "1234", "state": "frozen", "since": "2026-12-02"})
    investigation = ev.Investigation(findings=[frozen], completeness=1.0)
    claims = (Sentence("Most held transfers are released within 2 business days.", (0,)),
              Sentence("Your card is now frozen.", (0,)))
    not_run = drafted(ScriptedEvidence(("I have frozen your card ending 1234.", frozen.summary), claims), investigation)
    assert "Your card is now frozen" not in not_run.text and "I have frozen" not in not_run.text
    assert "I can freeze your card once you confirm." in not_run.text
    assert frozen.summary in not_run.text  # the record's own state, checked against it
    ran = drafted(ScriptedEvidence((frozen.summary,), claims), investigation, executed=frozenset({"card_block"}))
    assert "Your card is now frozen [1]." in ran.text


class RecordingInvestigate:
    def __init__(self, investigation: ev.Investigation) -> None:
        self.investigation = investigation
        self.requests: list[svc.InvestigateRequest] = []

    def __call__(self, request: svc.InvestigateRequest) -> ev.Investigation:
        self.requests.append(request)
        return self.investigation


def test_the_drafted_event_carries_the_investigation_the_draft_was_checked_against() -> None:
    investigate = RecordingInvestigate(INVESTIGATION)
    drafter = TicketDrafter(lambda request: svc.SearchResponse(passages=[TRANSFER_TIMES], best_score=0.9),
                            OfflineDrafter(TemplateBook.load()), investigate=investigate)
    event = ev.TicketClassified(
        meta=ev.EventMeta(event_id="e-1", tenant_id="rho-bank"),
        ticket=tk.Ticket(ticket_id="t-1", tenant_id="rho-bank", customer_id="cust-0001", channel=tk.CHANNEL_EMAIL,
                         body="My transfer is still pending"),
        normalized=tk.NormalizedTicket(problem_statement="A transfer to a new payee is still pending"),
        classification=tk.Classification(intent="pending_transfer", confidence=0.9, route=tk.ROUTE_DRAFT_FOR_REVIEW,
                                         archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC),
    )
    [emit] = drafter.handle_classified(event)
    assert emit.topic is Topic.TICKETS_DRAFTED
    assert emit.event.investigation == INVESTIGATION
    [request] = investigate.requests
    assert request.ticket.customer_id == "cust-0001" and request.classification.intent == "pending_transfer"
    assert TRANSFER.summary in emit.event.draft.text


def test_a_record_the_investigation_pinned_is_not_asked_for_again() -> None:
    pinned = ev.Investigation()
    pinned.CopyFrom(INVESTIGATION)
    pinned.identified.append(tk.Identifier(kind="transaction_id", value="TRF-88213"))
    missing = ["transaction_id", "amount", "date"]
    drafter = TicketDrafter(lambda request: svc.SearchResponse(passages=[TRANSFER_TIMES], best_score=0.9),
                            OfflineDrafter(TemplateBook.load()), investigate=RecordingInvestigate(pinned))

    def drafted_event(investigation_pins: bool) -> ev.TicketDrafted:
        event = ev.TicketClassified(
            meta=ev.EventMeta(event_id="e-1", tenant_id="rho-bank"),
            ticket=tk.Ticket(ticket_id="t-1", tenant_id="rho-bank", customer_id="cust-0001", body="Where is my transfer?"),
            normalized=tk.NormalizedTicket(problem_statement="Where is my transfer?", missing_identifiers=missing),
            classification=tk.Classification(intent="transfer_not_received_by_recipient", confidence=0.9,
                                              route=tk.ROUTE_DRAFT_FOR_REVIEW, archetype=tk.ARCHETYPE_ACCOUNT_SPECIFIC))
        chosen = drafter if investigation_pins else TicketDrafter(
            lambda request: svc.SearchResponse(passages=[TRANSFER_TIMES], best_score=0.9),
            OfflineDrafter(TemplateBook.load()), investigate=RecordingInvestigate(INVESTIGATION))
        [emit] = chosen.handle_classified(event)
        return emit.event

    found = drafted_event(investigation_pins=True)
    assert not found.normalized.missing_identifiers
    assert [(i.kind, i.value) for i in found.normalized.identifiers] == [("transaction_id", "TRF-88213")]
    assert "transaction ID" not in found.draft.text
    unpinned = drafted_event(investigation_pins=False)
    assert list(unpinned.normalized.missing_identifiers) == missing  # several candidates: still asked
    assert "transaction ID" in unpinned.draft.text
