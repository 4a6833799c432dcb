"""Agents' actions from the workspace as the learner's verdicts: each counts exactly as the
FeedbackReceived it amounts to, and a ticket reported by both topics is counted once."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import InvalidEvent, new_meta

from services.learner.config import LearnerConfig
from services.learner.handlers import Learner, feedback_of_action
from services.learner.tenant_data import TenantData
from tests.unit.test_learner_handlers import TENANTS, decided

TENANT = "rho-bank"
APPROVE, EDIT, REJECT = ev.AGENT_ACTION_KIND_APPROVE, ev.AGENT_ACTION_KIND_EDIT_AND_SEND, ev.AGENT_ACTION_KIND_REJECT
ESCALATE, CONTEXT_LOSS = ev.AGENT_ACTION_KIND_ESCALATE, ev.AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS


def action(ticket_id: str, kind: int, *, edit_ratio: float = 0.0, at: int | None = None,
           decision: int = ev.DECISION_REVIEW) -> ev.AgentAction:
    event = ev.AgentAction(meta=new_meta(TENANT, "workspace"), action_id=f"act-{ticket_id}-{kind}", ticket_id=ticket_id,
                           kind=kind, agent="agent:sam", edit_ratio=edit_ratio, decision=decided(ticket_id, decision))
    if at is not None:
        event.meta.occurred_at.seconds = at
    return event


def verdict(ticket_id: str, kind: int, ratio: float = 0.0, *, at: int | None = None) -> ev.FeedbackReceived:
    event = ev.FeedbackReceived(meta=new_meta(TENANT, "gateway"), ticket_id=ticket_id,
                                draft_verdict=ev.DraftVerdict(verdict=kind, edit_ratio=ratio))
    if at is not None:
        event.meta.occurred_at.seconds = at
    return event


def context_loss(ticket_id: str) -> ev.FeedbackReceived:
    return ev.FeedbackReceived(meta=new_meta(TENANT, "gateway"), ticket_id=ticket_id, context_loss=True)


def row(learner: Learner) -> dict[str, float]:
    [only] = learner.kpi_rows(TENANT, segment="retail", channel="all")
    return only.values


def learner_with(decisions: dict[str, int]) -> Learner:
    learner = Learner(LearnerConfig.load(), TenantData(TENANTS))
    for ticket_id, decision in decisions.items():
        learner.on_decided(decided(ticket_id, decision))
    return learner


TICKETS = {"t0": ev.DECISION_REVIEW, "t1": ev.DECISION_REVIEW, "t2": ev.DECISION_REVIEW, "t3": ev.DECISION_ESCALATE,
           "t4": ev.DECISION_REVIEW}


def test_each_action_is_the_verdict_it_stands_for() -> None:
    learner = learner_with(TICKETS)
    for event in [action("t0", APPROVE), action("t1", EDIT, edit_ratio=0.4), action("t2", REJECT),
                  action("t3", CONTEXT_LOSS, decision=ev.DECISION_ESCALATE), action("t4", ESCALATE)]:
        assert learner.on_agent_action(event) == []
    values = row(learner)
    assert values["draft_acceptance_rate"] == 1 / 3  # t0 of the verdicts t0, t1, t2: an escalation is none
    assert values["edit_burden"] == pytest.approx(0.2)  # (0 for the approval + 0.4) / 2, the rejection left out
    assert values["context_loss_rate"] == 1 / 5  # t3 of the five handoffs


def test_actions_count_exactly_as_the_equivalent_feedback() -> None:
    by_actions, by_feedback = learner_with(TICKETS), learner_with(TICKETS)
    for event in [action("t0", APPROVE), action("t1", EDIT, edit_ratio=0.75), action("t2", REJECT),
                  action("t3", CONTEXT_LOSS)]:
        by_actions.on_agent_action(event)
    for event in [verdict("t0", ev.AGENT_VERDICT_ACCEPTED), verdict("t1", ev.AGENT_VERDICT_EDITED, 0.75),
                  verdict("t2", ev.AGENT_VERDICT_REJECTED), context_loss("t3")]:
        by_feedback.on_feedback(event)
    assert by_actions.kpi_rows(TENANT) == by_feedback.kpi_rows(TENANT)


def test_the_feedback_an_action_amounts_to() -> None:
    approved = feedback_of_action(action("t0", APPROVE, edit_ratio=0.3))  # an approval changed nothing
    assert approved.ticket_id == "t0" and approved.meta.tenant_id == TENANT
    assert (approved.draft_verdict.verdict, approved.draft_verdict.edit_ratio) == (ev.AGENT_VERDICT_ACCEPTED, 0.0)
    edited = feedback_of_action(action("t1", EDIT, edit_ratio=1.7))
    assert (edited.draft_verdict.verdict, edited.draft_verdict.edit_ratio) == (ev.AGENT_VERDICT_EDITED, 1.0)
    assert feedback_of_action(action("t2", REJECT)).draft_verdict.verdict == ev.AGENT_VERDICT_REJECTED
    assert feedback_of_action(action("t3", CONTEXT_LOSS)).WhichOneof("kind") == "context_loss"
    assert feedback_of_action(action("t4", ESCALATE)) is None
    # The tenant and the ticket of the decision acted on, when the action does not name them.
    bare = action("t5", APPROVE)
    bare.meta.tenant_id, bare.ticket_id = "", ""
    attached = feedback_of_action(bare)
    assert (attached.meta.tenant_id, attached.ticket_id) == (TENANT, "t5")


def test_one_ticket_reported_by_both_topics_is_counted_once() -> None:
    learner = learner_with({"t0": ev.DECISION_REVIEW, "t1": ev.DECISION_REVIEW})
    learner.on_feedback(verdict("t0", ev.AGENT_VERDICT_ACCEPTED))
    learner.on_agent_action(action("t0", APPROVE))
    learner.on_agent_action(action("t1", CONTEXT_LOSS))
    learner.on_feedback(context_loss("t1"))
    values = row(learner)
    assert values["draft_acceptance_rate"] == 1.0 and values["edit_burden"] == 0.0  # one verdict, not two
    assert values["context_loss_rate"] == 1 / 2  # one flag on t1, of the two handoffs


@pytest.mark.parametrize("action_first", [True, False])
def test_of_two_verdicts_for_a_ticket_the_later_counts_whatever_the_read_order(action_first: bool) -> None:
    learner = learner_with({"t0": ev.DECISION_REVIEW})
    # The helpdesk reported a rejection at 100; the agent then edited and sent it at 200.
    events = [(learner.on_agent_action, action("t0", EDIT, edit_ratio=0.5, at=200)),
              (learner.on_feedback, verdict("t0", ev.AGENT_VERDICT_REJECTED, at=100))]
    for handle, event in events if action_first else reversed(events):
        handle(event)
    values = row(learner)
    # Had the older rejection counted, there would be no edit to measure.
    assert (values["draft_acceptance_rate"], values["edit_burden"]) == (0.0, 0.5)


def test_an_action_before_its_decision_waits_and_then_counts() -> None:
    learner = Learner(LearnerConfig.load(), TenantData(TENANTS))
    assert learner.on_agent_action(action("early", REJECT)) == []
    assert learner.snapshot().pending_feedback == 1
    learner.on_decided(decided("early", ev.DECISION_REVIEW))
    assert learner.snapshot().pending_feedback == 0
    assert row(learner)["draft_acceptance_rate"] == 0.0 and "edit_burden" not in row(learner)  # a rejection


def test_an_action_on_a_ticket_the_learner_has_is_counted_by_kind() -> None:
    before = REGISTRY.get_sample_value("supportflow_learner_agent_actions_total", {"action": "escalate"}) or 0.0
    learner_with({"t0": ev.DECISION_REVIEW}).on_agent_action(action("t0", ESCALATE))
    assert REGISTRY.get_sample_value("supportflow_learner_agent_actions_total", {"action": "escalate"}) == before + 1


def test_actions_that_are_no_outcome_change_nothing() -> None:
    learner = learner_with({"t0": ev.DECISION_REVIEW})
    before = learner.kpi_rows(TENANT)
    for kind in (ev.AGENT_ACTION_KIND_REASSIGN, ev.AGENT_ACTION_KIND_CONFIRM_ACTION,
                 ev.AGENT_ACTION_KIND_DECLINE_ACTION, ev.AGENT_ACTION_KIND_REDRAFT):
        assert learner.on_agent_action(action("t0", kind)) == []
    assert learner.kpi_rows(TENANT) == before


def test_invalid_actions_are_rejected() -> None:
    learner = Learner(LearnerConfig.load(), TenantData(TENANTS))
    unknown = action("t0", ev.AGENT_ACTION_KIND_UNSPECIFIED)
    with pytest.raises(InvalidEvent, match="unspecified or unknown"):
        learner.on_agent_action(unknown)
    ticketless = ev.AgentAction(meta=new_meta(TENANT, "workspace"), action_id="a", kind=APPROVE)
    with pytest.raises(InvalidEvent, match="without a ticket id"):
        learner.on_agent_action(ticketless)
    assert learner.snapshot().pending_feedback == 0


def test_an_action_survives_a_snapshot_of_the_learner() -> None:
    learner = learner_with({"t0": ev.DECISION_REVIEW})
    learner.on_agent_action(action("t0", EDIT, edit_ratio=0.5, at=200))
    restored = Learner.from_state(learner.export_state(), LearnerConfig.load(), TENANTS)
    restored.finish_replay()
    restored.on_feedback(verdict("t0", ev.AGENT_VERDICT_REJECTED, at=100))  # older: the edit stands
    assert row(restored)["edit_burden"] == 0.5 and row(restored)["draft_acceptance_rate"] == 0.0
