import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from supportflow.contracts.v1 import ticket_pb2 as _ticket_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_RESPOND: _ClassVar[Decision]
    DECISION_REVIEW: _ClassVar[Decision]
    DECISION_FOLLOW_UP: _ClassVar[Decision]
    DECISION_ESCALATE: _ClassVar[Decision]

class CaseType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CASE_TYPE_UNSPECIFIED: _ClassVar[CaseType]
    CASE_TYPE_EXPECTED_BEHAVIOUR: _ClassVar[CaseType]
    CASE_TYPE_CONFIGURATION_MISTAKE: _ClassVar[CaseType]
    CASE_TYPE_PRODUCT_DEFECT: _ClassVar[CaseType]
    CASE_TYPE_INCIDENT: _ClassVar[CaseType]
    CASE_TYPE_POLICY_EXCEPTION: _ClassVar[CaseType]

class AgentVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_VERDICT_UNSPECIFIED: _ClassVar[AgentVerdict]
    AGENT_VERDICT_ACCEPTED: _ClassVar[AgentVerdict]
    AGENT_VERDICT_EDITED: _ClassVar[AgentVerdict]
    AGENT_VERDICT_REJECTED: _ClassVar[AgentVerdict]

class CsatLatency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CSAT_LATENCY_UNSPECIFIED: _ClassVar[CsatLatency]
    CSAT_LATENCY_AT_RESOLUTION: _ClassVar[CsatLatency]
    CSAT_LATENCY_DELAYED: _ClassVar[CsatLatency]
    CSAT_LATENCY_MODEL_SCORED: _ClassVar[CsatLatency]

class OverrideAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERRIDE_ACTION_UNSPECIFIED: _ClassVar[OverrideAction]
    OVERRIDE_ACTION_SET_AUTOMATION: _ClassVar[OverrideAction]
    OVERRIDE_ACTION_KILL_SWITCH_ON: _ClassVar[OverrideAction]
    OVERRIDE_ACTION_KILL_SWITCH_OFF: _ClassVar[OverrideAction]
    OVERRIDE_ACTION_CLEAR: _ClassVar[OverrideAction]

class ActionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_STATUS_UNSPECIFIED: _ClassVar[ActionStatus]
    ACTION_STATUS_PROPOSED: _ClassVar[ActionStatus]
    ACTION_STATUS_DRY_RUN: _ClassVar[ActionStatus]
    ACTION_STATUS_EXECUTED: _ClassVar[ActionStatus]
    ACTION_STATUS_REFUSED: _ClassVar[ActionStatus]

class DeliveryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_KIND_UNSPECIFIED: _ClassVar[DeliveryKind]
    DELIVERY_KIND_REPLY: _ClassVar[DeliveryKind]
    DELIVERY_KIND_NOTE: _ClassVar[DeliveryKind]
    DELIVERY_KIND_FOLLOW_UP: _ClassVar[DeliveryKind]

class DeliveryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATUS_UNSPECIFIED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_DELIVERED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_ALREADY_DELIVERED: _ClassVar[DeliveryStatus]
    DELIVERY_STATUS_FAILED: _ClassVar[DeliveryStatus]

class AgentActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_ACTION_KIND_UNSPECIFIED: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_APPROVE: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_EDIT_AND_SEND: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_REJECT: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_ESCALATE: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_REASSIGN: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_QA_SEVERITY: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_CONFIRM_ACTION: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_DECLINE_ACTION: _ClassVar[AgentActionKind]
    AGENT_ACTION_KIND_REDRAFT: _ClassVar[AgentActionKind]
DECISION_UNSPECIFIED: Decision
DECISION_RESPOND: Decision
DECISION_REVIEW: Decision
DECISION_FOLLOW_UP: Decision
DECISION_ESCALATE: Decision
CASE_TYPE_UNSPECIFIED: CaseType
CASE_TYPE_EXPECTED_BEHAVIOUR: CaseType
CASE_TYPE_CONFIGURATION_MISTAKE: CaseType
CASE_TYPE_PRODUCT_DEFECT: CaseType
CASE_TYPE_INCIDENT: CaseType
CASE_TYPE_POLICY_EXCEPTION: CaseType
AGENT_VERDICT_UNSPECIFIED: AgentVerdict
AGENT_VERDICT_ACCEPTED: AgentVerdict
AGENT_VERDICT_EDITED: AgentVerdict
AGENT_VERDICT_REJECTED: AgentVerdict
CSAT_LATENCY_UNSPECIFIED: CsatLatency
CSAT_LATENCY_AT_RESOLUTION: CsatLatency
CSAT_LATENCY_DELAYED: CsatLatency
CSAT_LATENCY_MODEL_SCORED: CsatLatency
OVERRIDE_ACTION_UNSPECIFIED: OverrideAction
OVERRIDE_ACTION_SET_AUTOMATION: OverrideAction
OVERRIDE_ACTION_KILL_SWITCH_ON: OverrideAction
OVERRIDE_ACTION_KILL_SWITCH_OFF: OverrideAction
OVERRIDE_ACTION_CLEAR: OverrideAction
ACTION_STATUS_UNSPECIFIED: ActionStatus
ACTION_STATUS_PROPOSED: ActionStatus
ACTION_STATUS_DRY_RUN: ActionStatus
ACTION_STATUS_EXECUTED: ActionStatus
ACTION_STATUS_REFUSED: ActionStatus
DELIVERY_KIND_UNSPECIFIED: DeliveryKind
DELIVERY_KIND_REPLY: DeliveryKind
DELIVERY_KIND_NOTE: DeliveryKind
DELIVERY_KIND_FOLLOW_UP: DeliveryKind
DELIVERY_STATUS_UNSPECIFIED: DeliveryStatus
DELIVERY_STATUS_DELIVERED: DeliveryStatus
DELIVERY_STATUS_ALREADY_DELIVERED: DeliveryStatus
DELIVERY_STATUS_FAILED: DeliveryStatus
AGENT_ACTION_KIND_UNSPECIFIED: AgentActionKind
AGENT_ACTION_KIND_APPROVE: AgentActionKind
AGENT_ACTION_KIND_EDIT_AND_SEND: AgentActionKind
AGENT_ACTION_KIND_REJECT: AgentActionKind
AGENT_ACTION_KIND_ESCALATE: AgentActionKind
AGENT_ACTION_KIND_FLAG_CONTEXT_LOSS: AgentActionKind
AGENT_ACTION_KIND_REASSIGN: AgentActionKind
AGENT_ACTION_KIND_QA_SEVERITY: AgentActionKind
AGENT_ACTION_KIND_CONFIRM_ACTION: AgentActionKind
AGENT_ACTION_KIND_DECLINE_ACTION: AgentActionKind
AGENT_ACTION_KIND_REDRAFT: AgentActionKind

class EventMeta(_message.Message):
    __slots__ = ("event_id", "occurred_at", "tenant_id", "schema_version", "producer")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    occurred_at: _timestamp_pb2.Timestamp
    tenant_id: str
    schema_version: int
    producer: str
    def __init__(self, event_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant_id: _Optional[str] = ..., schema_version: _Optional[int] = ..., producer: _Optional[str] = ...) -> None: ...

class TicketReceived(_message.Message):
    __slots__ = ("meta", "ticket")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket: _ticket_pb2.Ticket
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket: _Optional[_Union[_ticket_pb2.Ticket, _Mapping]] = ...) -> None: ...

class TicketClassified(_message.Message):
    __slots__ = ("meta", "ticket", "normalized", "classification", "timeline")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket: _ticket_pb2.Ticket
    normalized: _ticket_pb2.NormalizedTicket
    classification: _ticket_pb2.Classification
    timeline: _ticket_pb2.Timeline
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket: _Optional[_Union[_ticket_pb2.Ticket, _Mapping]] = ..., normalized: _Optional[_Union[_ticket_pb2.NormalizedTicket, _Mapping]] = ..., classification: _Optional[_Union[_ticket_pb2.Classification, _Mapping]] = ..., timeline: _Optional[_Union[_ticket_pb2.Timeline, _Mapping]] = ...) -> None: ...

class TicketDrafted(_message.Message):
    __slots__ = ("meta", "ticket", "normalized", "classification", "draft", "evidence", "timeline", "investigation")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    INVESTIGATION_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket: _ticket_pb2.Ticket
    normalized: _ticket_pb2.NormalizedTicket
    classification: _ticket_pb2.Classification
    draft: _ticket_pb2.Draft
    evidence: _containers.RepeatedCompositeFieldContainer[_ticket_pb2.EvidencePassage]
    timeline: _ticket_pb2.Timeline
    investigation: Investigation
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket: _Optional[_Union[_ticket_pb2.Ticket, _Mapping]] = ..., normalized: _Optional[_Union[_ticket_pb2.NormalizedTicket, _Mapping]] = ..., classification: _Optional[_Union[_ticket_pb2.Classification, _Mapping]] = ..., draft: _Optional[_Union[_ticket_pb2.Draft, _Mapping]] = ..., evidence: _Optional[_Iterable[_Union[_ticket_pb2.EvidencePassage, _Mapping]]] = ..., timeline: _Optional[_Union[_ticket_pb2.Timeline, _Mapping]] = ..., investigation: _Optional[_Union[Investigation, _Mapping]] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("source", "lookup", "summary", "facts", "observed_at", "supports", "rejects", "available", "unavailable_reason", "record_id", "internal", "concludes")
    class FactsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_FIELD_NUMBER: _ClassVar[int]
    REJECTS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    CONCLUDES_FIELD_NUMBER: _ClassVar[int]
    source: str
    lookup: str
    summary: str
    facts: _containers.ScalarMap[str, str]
    observed_at: _timestamp_pb2.Timestamp
    supports: _containers.RepeatedScalarFieldContainer[CaseType]
    rejects: _containers.RepeatedScalarFieldContainer[CaseType]
    available: bool
    unavailable_reason: str
    record_id: str
    internal: bool
    concludes: bool
    def __init__(self, source: _Optional[str] = ..., lookup: _Optional[str] = ..., summary: _Optional[str] = ..., facts: _Optional[_Mapping[str, str]] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., supports: _Optional[_Iterable[_Union[CaseType, str]]] = ..., rejects: _Optional[_Iterable[_Union[CaseType, str]]] = ..., available: bool = ..., unavailable_reason: _Optional[str] = ..., record_id: _Optional[str] = ..., internal: bool = ..., concludes: bool = ...) -> None: ...

class Investigation(_message.Message):
    __slots__ = ("playbook", "findings", "case_type", "completeness", "first_evidence_ms", "elapsed_ms", "uncertain", "identified")
    PLAYBOOK_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    CASE_TYPE_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    FIRST_EVIDENCE_MS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_FIELD_NUMBER: _ClassVar[int]
    playbook: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    case_type: CaseType
    completeness: float
    first_evidence_ms: float
    elapsed_ms: float
    uncertain: _containers.RepeatedScalarFieldContainer[str]
    identified: _containers.RepeatedCompositeFieldContainer[_ticket_pb2.Identifier]
    def __init__(self, playbook: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., case_type: _Optional[_Union[CaseType, str]] = ..., completeness: _Optional[float] = ..., first_evidence_ms: _Optional[float] = ..., elapsed_ms: _Optional[float] = ..., uncertain: _Optional[_Iterable[str]] = ..., identified: _Optional[_Iterable[_Union[_ticket_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class ContextPacket(_message.Message):
    __slots__ = ("intent", "archetype", "urgency", "tier", "account_state", "conversation_summary", "steps_tried", "frustration_signals", "articles", "similar_case_ids", "incident_id", "missing_information", "suggested_next_step", "target_queue", "completeness", "unknown_fields", "risk_flags", "investigation", "evidence_completeness")
    class AccountStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INTENT_FIELD_NUMBER: _ClassVar[int]
    ARCHETYPE_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_STATE_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STEPS_TRIED_FIELD_NUMBER: _ClassVar[int]
    FRUSTRATION_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    ARTICLES_FIELD_NUMBER: _ClassVar[int]
    SIMILAR_CASE_IDS_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    MISSING_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_NEXT_STEP_FIELD_NUMBER: _ClassVar[int]
    TARGET_QUEUE_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELDS_FIELD_NUMBER: _ClassVar[int]
    RISK_FLAGS_FIELD_NUMBER: _ClassVar[int]
    INVESTIGATION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    intent: str
    archetype: _ticket_pb2.Archetype
    urgency: _ticket_pb2.Urgency
    tier: _ticket_pb2.CustomerTier
    account_state: _containers.ScalarMap[str, str]
    conversation_summary: str
    steps_tried: _containers.RepeatedScalarFieldContainer[str]
    frustration_signals: _containers.RepeatedScalarFieldContainer[str]
    articles: _containers.RepeatedCompositeFieldContainer[_ticket_pb2.EvidencePassage]
    similar_case_ids: _containers.RepeatedScalarFieldContainer[str]
    incident_id: str
    missing_information: _containers.RepeatedScalarFieldContainer[str]
    suggested_next_step: str
    target_queue: str
    completeness: float
    unknown_fields: _containers.RepeatedScalarFieldContainer[str]
    risk_flags: _containers.RepeatedScalarFieldContainer[_ticket_pb2.RiskFlag]
    investigation: _containers.RepeatedCompositeFieldContainer[Finding]
    evidence_completeness: float
    def __init__(self, intent: _Optional[str] = ..., archetype: _Optional[_Union[_ticket_pb2.Archetype, str]] = ..., urgency: _Optional[_Union[_ticket_pb2.Urgency, str]] = ..., tier: _Optional[_Union[_ticket_pb2.CustomerTier, str]] = ..., account_state: _Optional[_Mapping[str, str]] = ..., conversation_summary: _Optional[str] = ..., steps_tried: _Optional[_Iterable[str]] = ..., frustration_signals: _Optional[_Iterable[str]] = ..., articles: _Optional[_Iterable[_Union[_ticket_pb2.EvidencePassage, _Mapping]]] = ..., similar_case_ids: _Optional[_Iterable[str]] = ..., incident_id: _Optional[str] = ..., missing_information: _Optional[_Iterable[str]] = ..., suggested_next_step: _Optional[str] = ..., target_queue: _Optional[str] = ..., completeness: _Optional[float] = ..., unknown_fields: _Optional[_Iterable[str]] = ..., risk_flags: _Optional[_Iterable[_Union[_ticket_pb2.RiskFlag, str]]] = ..., investigation: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., evidence_completeness: _Optional[float] = ...) -> None: ...

class TicketDecided(_message.Message):
    __slots__ = ("meta", "ticket", "classification", "decision", "reason", "case_type", "target_queue", "draft", "packet", "incident_id", "timeline", "investigation")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CASE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_QUEUE_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    PACKET_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    INVESTIGATION_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket: _ticket_pb2.Ticket
    classification: _ticket_pb2.Classification
    decision: Decision
    reason: str
    case_type: CaseType
    target_queue: str
    draft: _ticket_pb2.Draft
    packet: ContextPacket
    incident_id: str
    timeline: _ticket_pb2.Timeline
    investigation: Investigation
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket: _Optional[_Union[_ticket_pb2.Ticket, _Mapping]] = ..., classification: _Optional[_Union[_ticket_pb2.Classification, _Mapping]] = ..., decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[str] = ..., case_type: _Optional[_Union[CaseType, str]] = ..., target_queue: _Optional[str] = ..., draft: _Optional[_Union[_ticket_pb2.Draft, _Mapping]] = ..., packet: _Optional[_Union[ContextPacket, _Mapping]] = ..., incident_id: _Optional[str] = ..., timeline: _Optional[_Union[_ticket_pb2.Timeline, _Mapping]] = ..., investigation: _Optional[_Union[Investigation, _Mapping]] = ...) -> None: ...

class DraftVerdict(_message.Message):
    __slots__ = ("verdict", "edit_ratio")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EDIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    verdict: AgentVerdict
    edit_ratio: float
    def __init__(self, verdict: _Optional[_Union[AgentVerdict, str]] = ..., edit_ratio: _Optional[float] = ...) -> None: ...

class CsatScore(_message.Message):
    __slots__ = ("latency", "score")
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    latency: CsatLatency
    score: float
    def __init__(self, latency: _Optional[_Union[CsatLatency, str]] = ..., score: _Optional[float] = ...) -> None: ...

class RepeatContact(_message.Message):
    __slots__ = ("days_after_resolution", "reopened")
    DAYS_AFTER_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    REOPENED_FIELD_NUMBER: _ClassVar[int]
    days_after_resolution: int
    reopened: bool
    def __init__(self, days_after_resolution: _Optional[int] = ..., reopened: bool = ...) -> None: ...

class QaResult(_message.Message):
    __slots__ = ("hallucinated_policy", "note", "severity_class", "severity")
    HALLUCINATED_POLICY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    hallucinated_policy: bool
    note: str
    severity_class: str
    severity: str
    def __init__(self, hallucinated_policy: bool = ..., note: _Optional[str] = ..., severity_class: _Optional[str] = ..., severity: _Optional[str] = ...) -> None: ...

class CustomerReply(_message.Message):
    __slots__ = ("text", "agent_turns_before")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AGENT_TURNS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    text: str
    agent_turns_before: int
    def __init__(self, text: _Optional[str] = ..., agent_turns_before: _Optional[int] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("status", "changed_by")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    status: str
    changed_by: str
    def __init__(self, status: _Optional[str] = ..., changed_by: _Optional[str] = ...) -> None: ...

class Resolution(_message.Message):
    __slots__ = ("resolved_by_bot", "handle_time_s", "resolution_notes", "cited_article_ids")
    RESOLVED_BY_BOT_FIELD_NUMBER: _ClassVar[int]
    HANDLE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTES_FIELD_NUMBER: _ClassVar[int]
    CITED_ARTICLE_IDS_FIELD_NUMBER: _ClassVar[int]
    resolved_by_bot: bool
    handle_time_s: float
    resolution_notes: str
    cited_article_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resolved_by_bot: bool = ..., handle_time_s: _Optional[float] = ..., resolution_notes: _Optional[str] = ..., cited_article_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FeedbackReceived(_message.Message):
    __slots__ = ("meta", "ticket_id", "draft_verdict", "csat", "repeat_contact", "context_loss", "misroute", "qa", "resolution", "customer_reply", "status_change", "source", "channel")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DRAFT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    CSAT_FIELD_NUMBER: _ClassVar[int]
    REPEAT_CONTACT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LOSS_FIELD_NUMBER: _ClassVar[int]
    MISROUTE_FIELD_NUMBER: _ClassVar[int]
    QA_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_REPLY_FIELD_NUMBER: _ClassVar[int]
    STATUS_CHANGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket_id: str
    draft_verdict: DraftVerdict
    csat: CsatScore
    repeat_contact: RepeatContact
    context_loss: bool
    misroute: bool
    qa: QaResult
    resolution: Resolution
    customer_reply: CustomerReply
    status_change: StatusChange
    source: str
    channel: _ticket_pb2.Channel
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket_id: _Optional[str] = ..., draft_verdict: _Optional[_Union[DraftVerdict, _Mapping]] = ..., csat: _Optional[_Union[CsatScore, _Mapping]] = ..., repeat_contact: _Optional[_Union[RepeatContact, _Mapping]] = ..., context_loss: bool = ..., misroute: bool = ..., qa: _Optional[_Union[QaResult, _Mapping]] = ..., resolution: _Optional[_Union[Resolution, _Mapping]] = ..., customer_reply: _Optional[_Union[CustomerReply, _Mapping]] = ..., status_change: _Optional[_Union[StatusChange, _Mapping]] = ..., source: _Optional[str] = ..., channel: _Optional[_Union[_ticket_pb2.Channel, str]] = ...) -> None: ...

class KbArticleChanged(_message.Message):
    __slots__ = ("meta", "article_id", "deleted", "title", "content", "url", "source", "owner", "updated_at", "review_by", "intents", "locale", "is_policy")
    META_FIELD_NUMBER: _ClassVar[int]
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_BY_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    IS_POLICY_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    article_id: str
    deleted: bool
    title: str
    content: str
    url: str
    source: str
    owner: str
    updated_at: _timestamp_pb2.Timestamp
    review_by: _timestamp_pb2.Timestamp
    intents: _containers.RepeatedScalarFieldContainer[str]
    locale: str
    is_policy: bool
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., article_id: _Optional[str] = ..., deleted: bool = ..., title: _Optional[str] = ..., content: _Optional[str] = ..., url: _Optional[str] = ..., source: _Optional[str] = ..., owner: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., review_by: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., intents: _Optional[_Iterable[str]] = ..., locale: _Optional[str] = ..., is_policy: bool = ...) -> None: ...

class KbGapDetected(_message.Message):
    __slots__ = ("meta", "ticket_id", "query", "intent", "best_score")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket_id: str
    query: str
    intent: str
    best_score: float
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket_id: _Optional[str] = ..., query: _Optional[str] = ..., intent: _Optional[str] = ..., best_score: _Optional[float] = ...) -> None: ...

class TicketResolved(_message.Message):
    __slots__ = ("meta", "ticket_id", "problem_statement", "resolution_notes", "intent", "article_ids")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTES_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    ARTICLE_IDS_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket_id: str
    problem_statement: str
    resolution_notes: str
    intent: str
    article_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket_id: _Optional[str] = ..., problem_statement: _Optional[str] = ..., resolution_notes: _Optional[str] = ..., intent: _Optional[str] = ..., article_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class KbProposal(_message.Message):
    __slots__ = ("meta", "proposal_id", "topic", "title", "body", "source_ticket_ids")
    META_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TICKET_IDS_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    proposal_id: str
    topic: str
    title: str
    body: str
    source_ticket_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., proposal_id: _Optional[str] = ..., topic: _Optional[str] = ..., title: _Optional[str] = ..., body: _Optional[str] = ..., source_ticket_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RoutingOverride(_message.Message):
    __slots__ = ("meta", "override_id", "archetype", "action", "route", "reason", "issued_by")
    META_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHETYPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ISSUED_BY_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    override_id: str
    archetype: _ticket_pb2.Archetype
    action: OverrideAction
    route: _ticket_pb2.Route
    reason: str
    issued_by: str
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., override_id: _Optional[str] = ..., archetype: _Optional[_Union[_ticket_pb2.Archetype, str]] = ..., action: _Optional[_Union[OverrideAction, str]] = ..., route: _Optional[_Union[_ticket_pb2.Route, str]] = ..., reason: _Optional[str] = ..., issued_by: _Optional[str] = ...) -> None: ...

class IncidentDetected(_message.Message):
    __slots__ = ("meta", "incident_id", "signature", "product", "ticket_ids", "first_seen")
    META_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    TICKET_IDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    incident_id: str
    signature: str
    product: str
    ticket_ids: _containers.RepeatedScalarFieldContainer[str]
    first_seen: _timestamp_pb2.Timestamp
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., incident_id: _Optional[str] = ..., signature: _Optional[str] = ..., product: _Optional[str] = ..., ticket_ids: _Optional[_Iterable[str]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActionRecorded(_message.Message):
    __slots__ = ("meta", "ticket_id", "action_id", "tool", "params", "status", "reason", "customer_id", "requested_by", "proposal_id", "confirmed_by", "confirmation_ref")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_BY_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_REF_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket_id: str
    action_id: str
    tool: str
    params: _containers.ScalarMap[str, str]
    status: ActionStatus
    reason: str
    customer_id: str
    requested_by: str
    proposal_id: str
    confirmed_by: str
    confirmation_ref: str
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket_id: _Optional[str] = ..., action_id: _Optional[str] = ..., tool: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[ActionStatus, str]] = ..., reason: _Optional[str] = ..., customer_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., proposal_id: _Optional[str] = ..., confirmed_by: _Optional[str] = ..., confirmation_ref: _Optional[str] = ...) -> None: ...

class ActionConfirmed(_message.Message):
    __slots__ = ("meta", "proposal_id", "ticket_id", "confirmation_ref", "confirmed_by")
    META_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_REF_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_BY_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    proposal_id: str
    ticket_id: str
    confirmation_ref: str
    confirmed_by: str
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., proposal_id: _Optional[str] = ..., ticket_id: _Optional[str] = ..., confirmation_ref: _Optional[str] = ..., confirmed_by: _Optional[str] = ...) -> None: ...

class DeliveryRecorded(_message.Message):
    __slots__ = ("meta", "ticket_id", "decision_event_id", "decision", "kind", "provider", "external_ticket_id", "external_id", "status", "attempts", "error", "text", "citations", "received_at", "delivered_at", "latency_s")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket_id: str
    decision_event_id: str
    decision: Decision
    kind: DeliveryKind
    provider: str
    external_ticket_id: str
    external_id: str
    status: DeliveryStatus
    attempts: int
    error: str
    text: str
    citations: _containers.RepeatedCompositeFieldContainer[_ticket_pb2.Citation]
    received_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    latency_s: float
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket_id: _Optional[str] = ..., decision_event_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., kind: _Optional[_Union[DeliveryKind, str]] = ..., provider: _Optional[str] = ..., external_ticket_id: _Optional[str] = ..., external_id: _Optional[str] = ..., status: _Optional[_Union[DeliveryStatus, str]] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[_ticket_pb2.Citation, _Mapping]]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latency_s: _Optional[float] = ...) -> None: ...

class DeliveryRetry(_message.Message):
    __slots__ = ("meta", "decision", "attempts", "error", "retry_at")
    META_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    decision: TicketDecided
    attempts: int
    error: str
    retry_at: _timestamp_pb2.Timestamp
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., decision: _Optional[_Union[TicketDecided, _Mapping]] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AgentAction(_message.Message):
    __slots__ = ("meta", "action_id", "ticket_id", "kind", "agent", "text", "edit_ratio", "reason", "note", "target_queue", "decision", "assignee", "qa_class", "proposal_id")
    META_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EDIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TARGET_QUEUE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    QA_CLASS_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_ID_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    action_id: str
    ticket_id: str
    kind: AgentActionKind
    agent: str
    text: str
    edit_ratio: float
    reason: str
    note: str
    target_queue: str
    decision: TicketDecided
    assignee: str
    qa_class: str
    proposal_id: str
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., action_id: _Optional[str] = ..., ticket_id: _Optional[str] = ..., kind: _Optional[_Union[AgentActionKind, str]] = ..., agent: _Optional[str] = ..., text: _Optional[str] = ..., edit_ratio: _Optional[float] = ..., reason: _Optional[str] = ..., note: _Optional[str] = ..., target_queue: _Optional[str] = ..., decision: _Optional[_Union[TicketDecided, _Mapping]] = ..., assignee: _Optional[str] = ..., qa_class: _Optional[str] = ..., proposal_id: _Optional[str] = ...) -> None: ...

class QaSampleRequested(_message.Message):
    __slots__ = ("meta", "ticket_id", "week", "decision")
    META_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    WEEK_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    meta: EventMeta
    ticket_id: str
    week: str
    decision: TicketDecided
    def __init__(self, meta: _Optional[_Union[EventMeta, _Mapping]] = ..., ticket_id: _Optional[str] = ..., week: _Optional[str] = ..., decision: _Optional[_Union[TicketDecided, _Mapping]] = ...) -> None: ...
