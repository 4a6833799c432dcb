import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_EMAIL: _ClassVar[Channel]
    CHANNEL_CHAT: _ClassVar[Channel]
    CHANNEL_WEB_FORM: _ClassVar[Channel]
    CHANNEL_API: _ClassVar[Channel]
    CHANNEL_PHONE: _ClassVar[Channel]
    CHANNEL_SOCIAL: _ClassVar[Channel]

class Archetype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARCHETYPE_UNSPECIFIED: _ClassVar[Archetype]
    ARCHETYPE_REPETITIVE: _ClassVar[Archetype]
    ARCHETYPE_FAQ_BOUNDED: _ClassVar[Archetype]
    ARCHETYPE_ACCOUNT_SPECIFIC: _ClassVar[Archetype]

class Urgency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    URGENCY_UNSPECIFIED: _ClassVar[Urgency]
    URGENCY_LOW: _ClassVar[Urgency]
    URGENCY_NORMAL: _ClassVar[Urgency]
    URGENCY_HIGH: _ClassVar[Urgency]
    URGENCY_CRITICAL: _ClassVar[Urgency]

class RiskFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_FLAG_UNSPECIFIED: _ClassVar[RiskFlag]
    RISK_FLAG_SECURITY: _ClassVar[RiskFlag]
    RISK_FLAG_BILLING_DISPUTE: _ClassVar[RiskFlag]
    RISK_FLAG_LEGAL: _ClassVar[RiskFlag]
    RISK_FLAG_CHURN: _ClassVar[RiskFlag]
    RISK_FLAG_PROMPT_INJECTION: _ClassVar[RiskFlag]

class CustomerTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CUSTOMER_TIER_UNSPECIFIED: _ClassVar[CustomerTier]
    CUSTOMER_TIER_STANDARD: _ClassVar[CustomerTier]
    CUSTOMER_TIER_PREMIUM: _ClassVar[CustomerTier]
    CUSTOMER_TIER_ENTERPRISE: _ClassVar[CustomerTier]

class Route(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_UNSPECIFIED: _ClassVar[Route]
    ROUTE_AUTO_RESPOND: _ClassVar[Route]
    ROUTE_DRAFT_FOR_REVIEW: _ClassVar[Route]
    ROUTE_ASK_FOLLOW_UP: _ClassVar[Route]
    ROUTE_ESCALATE: _ClassVar[Route]

class DraftStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRAFT_STATUS_UNSPECIFIED: _ClassVar[DraftStatus]
    DRAFT_STATUS_READY: _ClassVar[DraftStatus]
    DRAFT_STATUS_BLOCKED: _ClassVar[DraftStatus]
    DRAFT_STATUS_NO_EVIDENCE: _ClassVar[DraftStatus]

class Answerability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWERABILITY_UNSPECIFIED: _ClassVar[Answerability]
    ANSWERABILITY_ANSWERED: _ClassVar[Answerability]
    ANSWERABILITY_NOT_ANSWERED: _ClassVar[Answerability]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_EMAIL: Channel
CHANNEL_CHAT: Channel
CHANNEL_WEB_FORM: Channel
CHANNEL_API: Channel
CHANNEL_PHONE: Channel
CHANNEL_SOCIAL: Channel
ARCHETYPE_UNSPECIFIED: Archetype
ARCHETYPE_REPETITIVE: Archetype
ARCHETYPE_FAQ_BOUNDED: Archetype
ARCHETYPE_ACCOUNT_SPECIFIC: Archetype
URGENCY_UNSPECIFIED: Urgency
URGENCY_LOW: Urgency
URGENCY_NORMAL: Urgency
URGENCY_HIGH: Urgency
URGENCY_CRITICAL: Urgency
RISK_FLAG_UNSPECIFIED: RiskFlag
RISK_FLAG_SECURITY: RiskFlag
RISK_FLAG_BILLING_DISPUTE: RiskFlag
RISK_FLAG_LEGAL: RiskFlag
RISK_FLAG_CHURN: RiskFlag
RISK_FLAG_PROMPT_INJECTION: RiskFlag
CUSTOMER_TIER_UNSPECIFIED: CustomerTier
CUSTOMER_TIER_STANDARD: CustomerTier
CUSTOMER_TIER_PREMIUM: CustomerTier
CUSTOMER_TIER_ENTERPRISE: CustomerTier
ROUTE_UNSPECIFIED: Route
ROUTE_AUTO_RESPOND: Route
ROUTE_DRAFT_FOR_REVIEW: Route
ROUTE_ASK_FOLLOW_UP: Route
ROUTE_ESCALATE: Route
DRAFT_STATUS_UNSPECIFIED: DraftStatus
DRAFT_STATUS_READY: DraftStatus
DRAFT_STATUS_BLOCKED: DraftStatus
DRAFT_STATUS_NO_EVIDENCE: DraftStatus
ANSWERABILITY_UNSPECIFIED: Answerability
ANSWERABILITY_ANSWERED: Answerability
ANSWERABILITY_NOT_ANSWERED: Answerability

class ConversationTurn(_message.Message):
    __slots__ = ("author", "text", "at")
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    author: str
    text: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, author: _Optional[str] = ..., text: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Ticket(_message.Message):
    __slots__ = ("ticket_id", "tenant_id", "channel", "customer_id", "subject", "body", "language", "history", "metadata", "received_at", "origin")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    tenant_id: str
    channel: Channel
    customer_id: str
    subject: str
    body: str
    language: str
    history: _containers.RepeatedCompositeFieldContainer[ConversationTurn]
    metadata: _containers.ScalarMap[str, str]
    received_at: _timestamp_pb2.Timestamp
    origin: ChannelOrigin
    def __init__(self, ticket_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., customer_id: _Optional[str] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., language: _Optional[str] = ..., history: _Optional[_Iterable[_Union[ConversationTurn, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[_Union[ChannelOrigin, _Mapping]] = ...) -> None: ...

class ChannelOrigin(_message.Message):
    __slots__ = ("provider", "external_id", "requester_id", "requester_email", "requester_name", "message_id", "references", "mailbox", "attachments", "intake_flags", "event")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    INTAKE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    provider: str
    external_id: str
    requester_id: str
    requester_email: str
    requester_name: str
    message_id: str
    references: _containers.RepeatedScalarFieldContainer[str]
    mailbox: str
    attachments: int
    intake_flags: _containers.RepeatedScalarFieldContainer[str]
    event: str
    def __init__(self, provider: _Optional[str] = ..., external_id: _Optional[str] = ..., requester_id: _Optional[str] = ..., requester_email: _Optional[str] = ..., requester_name: _Optional[str] = ..., message_id: _Optional[str] = ..., references: _Optional[_Iterable[str]] = ..., mailbox: _Optional[str] = ..., attachments: _Optional[int] = ..., intake_flags: _Optional[_Iterable[str]] = ..., event: _Optional[str] = ...) -> None: ...

class Identifier(_message.Message):
    __slots__ = ("kind", "value")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    value: str
    def __init__(self, kind: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class NormalizedTicket(_message.Message):
    __slots__ = ("problem_statement", "language", "product", "product_version", "platform", "action_attempted", "expected_outcome", "actual_outcome", "timing", "identifiers", "missing_identifiers", "steps_tried")
    PROBLEM_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    ACTION_ATTEMPTED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    STEPS_TRIED_FIELD_NUMBER: _ClassVar[int]
    problem_statement: str
    language: str
    product: str
    product_version: str
    platform: str
    action_attempted: str
    expected_outcome: str
    actual_outcome: str
    timing: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    missing_identifiers: _containers.RepeatedScalarFieldContainer[str]
    steps_tried: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, problem_statement: _Optional[str] = ..., language: _Optional[str] = ..., product: _Optional[str] = ..., product_version: _Optional[str] = ..., platform: _Optional[str] = ..., action_attempted: _Optional[str] = ..., expected_outcome: _Optional[str] = ..., actual_outcome: _Optional[str] = ..., timing: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., missing_identifiers: _Optional[_Iterable[str]] = ..., steps_tried: _Optional[_Iterable[str]] = ...) -> None: ...

class IntentScore(_message.Message):
    __slots__ = ("intent", "probability")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    intent: str
    probability: float
    def __init__(self, intent: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("intent", "confidence", "top_intents", "archetype", "urgency", "sentiment", "frustration_signals", "risk_flags", "tier", "route", "route_reason", "model_version", "input_flags", "segment")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TOP_INTENTS_FIELD_NUMBER: _ClassVar[int]
    ARCHETYPE_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    FRUSTRATION_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    RISK_FLAGS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FLAGS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    intent: str
    confidence: float
    top_intents: _containers.RepeatedCompositeFieldContainer[IntentScore]
    archetype: Archetype
    urgency: Urgency
    sentiment: float
    frustration_signals: _containers.RepeatedScalarFieldContainer[str]
    risk_flags: _containers.RepeatedScalarFieldContainer[RiskFlag]
    tier: CustomerTier
    route: Route
    route_reason: str
    model_version: str
    input_flags: _containers.RepeatedScalarFieldContainer[str]
    segment: str
    def __init__(self, intent: _Optional[str] = ..., confidence: _Optional[float] = ..., top_intents: _Optional[_Iterable[_Union[IntentScore, _Mapping]]] = ..., archetype: _Optional[_Union[Archetype, str]] = ..., urgency: _Optional[_Union[Urgency, str]] = ..., sentiment: _Optional[float] = ..., frustration_signals: _Optional[_Iterable[str]] = ..., risk_flags: _Optional[_Iterable[_Union[RiskFlag, str]]] = ..., tier: _Optional[_Union[CustomerTier, str]] = ..., route: _Optional[_Union[Route, str]] = ..., route_reason: _Optional[str] = ..., model_version: _Optional[str] = ..., input_flags: _Optional[_Iterable[str]] = ..., segment: _Optional[str] = ...) -> None: ...

class EvidencePassage(_message.Message):
    __slots__ = ("article_id", "chunk_id", "title", "section", "text", "score", "url", "source", "is_policy", "stale", "intents")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SECTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    IS_POLICY_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    chunk_id: str
    title: str
    section: str
    text: str
    score: float
    url: str
    source: str
    is_policy: bool
    stale: bool
    intents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, article_id: _Optional[str] = ..., chunk_id: _Optional[str] = ..., title: _Optional[str] = ..., section: _Optional[str] = ..., text: _Optional[str] = ..., score: _Optional[float] = ..., url: _Optional[str] = ..., source: _Optional[str] = ..., is_policy: bool = ..., stale: bool = ..., intents: _Optional[_Iterable[str]] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("article_id", "chunk_id", "title", "passage", "url", "stale")
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    article_id: str
    chunk_id: str
    title: str
    passage: str
    url: str
    stale: bool
    def __init__(self, article_id: _Optional[str] = ..., chunk_id: _Optional[str] = ..., title: _Optional[str] = ..., passage: _Optional[str] = ..., url: _Optional[str] = ..., stale: bool = ...) -> None: ...

class PolicyClaim(_message.Message):
    __slots__ = ("claim", "kind", "article_id", "passage", "verified")
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARTICLE_ID_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    claim: str
    kind: str
    article_id: str
    passage: str
    verified: bool
    def __init__(self, claim: _Optional[str] = ..., kind: _Optional[str] = ..., article_id: _Optional[str] = ..., passage: _Optional[str] = ..., verified: bool = ...) -> None: ...

class Draft(_message.Message):
    __slots__ = ("text", "citations", "ledger", "uncertainties", "follow_up_questions", "next_step", "status", "block_reason", "generator", "grounding", "answerability", "answerability_reason")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTIES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_UP_QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_STEP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_REASON_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    GROUNDING_FIELD_NUMBER: _ClassVar[int]
    ANSWERABILITY_FIELD_NUMBER: _ClassVar[int]
    ANSWERABILITY_REASON_FIELD_NUMBER: _ClassVar[int]
    text: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    ledger: _containers.RepeatedCompositeFieldContainer[PolicyClaim]
    uncertainties: _containers.RepeatedScalarFieldContainer[str]
    follow_up_questions: _containers.RepeatedScalarFieldContainer[str]
    next_step: str
    status: DraftStatus
    block_reason: str
    generator: str
    grounding: float
    answerability: Answerability
    answerability_reason: str
    def __init__(self, text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ..., ledger: _Optional[_Iterable[_Union[PolicyClaim, _Mapping]]] = ..., uncertainties: _Optional[_Iterable[str]] = ..., follow_up_questions: _Optional[_Iterable[str]] = ..., next_step: _Optional[str] = ..., status: _Optional[_Union[DraftStatus, str]] = ..., block_reason: _Optional[str] = ..., generator: _Optional[str] = ..., grounding: _Optional[float] = ..., answerability: _Optional[_Union[Answerability, str]] = ..., answerability_reason: _Optional[str] = ...) -> None: ...

class Timeline(_message.Message):
    __slots__ = ("received_at", "classified_at", "evidence_at", "drafted_at", "decided_at")
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_AT_FIELD_NUMBER: _ClassVar[int]
    DRAFTED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    received_at: _timestamp_pb2.Timestamp
    classified_at: _timestamp_pb2.Timestamp
    evidence_at: _timestamp_pb2.Timestamp
    drafted_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., classified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., evidence_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., drafted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
