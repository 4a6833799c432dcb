"""Every Kafka topic, named once. Nothing else in the code base spells a topic name.

Each topic has a dead-letter twin (`<name>.dlq`) that receives the messages its consumers could
not process, untouched, with the reason and origin in headers. `SUPPORTFLOW_TOPIC_PREFIX` puts a
whole deployment (or a test) in its own namespace on a shared cluster.
"""

from __future__ import annotations

import enum

from google.protobuf.message import Message

from supportflow.contracts.v1 import events_pb2 as ev

DEAD_LETTER_SUFFIX = ".dlq"
# A committing consumer group's memory of the event ids it handled (ConsumerLoop's redelivery
# memory): one topic per group, named after the group, created by the group's first consumer.
HANDLED_IDS_SUFFIX = ".handled-ids"
# The learner's snapshots of its shards (services/learner/snapshots.py): a compacted topic, one
# partition per partition of Topic.LEARNER_EVENTS, created by the learner. Not events: no twin.
LEARNER_SNAPSHOTS = "learner.snapshots"


class Topic(enum.Enum):
    TICKETS_RECEIVED = ("tickets.received", ev.TicketReceived)
    TICKETS_CLASSIFIED = ("tickets.classified", ev.TicketClassified)
    TICKETS_DRAFTED = ("tickets.drafted", ev.TicketDrafted)
    TICKETS_RESPONDED = ("tickets.responded", ev.TicketDecided)
    TICKETS_REVIEW = ("tickets.review", ev.TicketDecided)
    TICKETS_FOLLOW_UP = ("tickets.follow_up", ev.TicketDecided)
    TICKETS_ESCALATED = ("tickets.escalated", ev.TicketDecided)
    TICKETS_RESOLVED = ("tickets.resolved", ev.TicketResolved)
    TICKETS_FEEDBACK = ("tickets.feedback", ev.FeedbackReceived)
    KB_ARTICLES = ("kb.articles", ev.KbArticleChanged)
    KB_GAPS = ("kb.gaps", ev.KbGapDetected)
    KB_PROPOSALS = ("kb.proposals", ev.KbProposal)
    ROUTING_OVERRIDES = ("routing.overrides", ev.RoutingOverride)
    INCIDENTS_DETECTED = ("incidents.detected", ev.IncidentDetected)
    ACTIONS_RECORDED = ("actions.recorded", ev.ActionRecorded)
    ACTIONS_CONFIRMED = ("actions.confirmed", ev.ActionConfirmed)
    TICKETS_DELIVERED = ("tickets.delivered", ev.DeliveryRecorded)
    AGENT_ACTIONS = ("agent.actions", ev.AgentAction)
    QA_SAMPLES = ("qa.samples", ev.QaSampleRequested)
    # Delivery's own: decisions whose first delivery attempt failed, so that first attempts never wait on retries.
    DELIVERY_RETRIES = ("tickets.delivery_retries", ev.DeliveryRetry)
    # The escalator's own re-partition topic: classified and drafted tickets that can be part of an
    # incident, keyed by their burst signature, so one replica owns each signature's windows. It
    # carries both messages untouched (the message-type header says which).
    ESCALATOR_BY_SIGNATURE = ("escalator.tickets_by_signature", ev.TicketClassified)
    # The learner's own log: every input the learner handles, passed on untouched by its intake
    # with the topic it came from in a header (eventbus.Forward), to the partition of its tenant:
    # each partition is one shard of the learner's state, applied in its one order by the replica
    # that holds it (services/learner/shards.py). The count is fixed: tenants are placed by it.
    LEARNER_EVENTS = ("learner.events", ev.TicketDecided, 8)

    def __init__(self, base_name: str, message_type: type[Message], partitions: int | None = None) -> None:
        self.base_name = base_name
        self.message_type = message_type
        self.partitions = partitions  # None: the deployment's SUPPORTFLOW_TOPIC_PARTITIONS

    def name_in(self, prefix: str) -> str:
        """The physical topic name in a deployment whose topics carry `prefix`."""
        return f"{prefix}{self.base_name}"

    def dead_letter_in(self, prefix: str) -> str:
        return f"{prefix}{self.base_name}{DEAD_LETTER_SUFFIX}"


DECISION_TOPICS: dict[int, Topic] = {
    ev.DECISION_RESPOND: Topic.TICKETS_RESPONDED,
    ev.DECISION_REVIEW: Topic.TICKETS_REVIEW,
    ev.DECISION_FOLLOW_UP: Topic.TICKETS_FOLLOW_UP,
    ev.DECISION_ESCALATE: Topic.TICKETS_ESCALATED,
}


def all_physical_names(prefix: str) -> list[str]:
    """Every topic and its dead-letter twin, as created by `supportflow topics create`."""
    names: list[str] = []
    for topic in Topic:
        names += [topic.name_in(prefix), topic.dead_letter_in(prefix)]
    return names


def learner_snapshots_in(prefix: str) -> str:
    return f"{prefix}{LEARNER_SNAPSHOTS}"


def handled_ids_in(prefix: str, group_id: str) -> str:
    """The topic holding the event ids consumer group `group_id` handled, inside the namespace of
    `prefix` (group ids normally start with it already)."""
    scoped = group_id if group_id.startswith(prefix) else f"{prefix}{group_id}"
    return f"{scoped}{HANDLED_IDS_SUFFIX}"
