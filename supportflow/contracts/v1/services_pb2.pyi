import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from supportflow.contracts.v1 import events_pb2 as _events_pb2
from supportflow.contracts.v1 import ticket_pb2 as _ticket_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("ticket",)
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ticket: _ticket_pb2.Ticket
    def __init__(self, ticket: _Optional[_Union[_ticket_pb2.Ticket, _Mapping]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("normalized", "classification")
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    normalized: _ticket_pb2.NormalizedTicket
    classification: _ticket_pb2.Classification
    def __init__(self, normalized: _Optional[_Union[_ticket_pb2.NormalizedTicket, _Mapping]] = ..., classification: _Optional[_Union[_ticket_pb2.Classification, _Mapping]] = ...) -> None: ...

class SearchFilters(_message.Message):
    __slots__ = ("locale", "intents", "sources", "policy_only")
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    POLICY_ONLY_FIELD_NUMBER: _ClassVar[int]
    locale: str
    intents: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[str]
    policy_only: bool
    def __init__(self, locale: _Optional[str] = ..., intents: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[str]] = ..., policy_only: bool = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("tenant_id", "query", "k", "filters", "intent", "ticket_id", "with_policy")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_POLICY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    query: str
    k: int
    filters: SearchFilters
    intent: str
    ticket_id: str
    with_policy: bool
    def __init__(self, tenant_id: _Optional[str] = ..., query: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[SearchFilters, _Mapping]] = ..., intent: _Optional[str] = ..., ticket_id: _Optional[str] = ..., with_policy: bool = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("passages", "gap", "best_score", "policy")
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    passages: _containers.RepeatedCompositeFieldContainer[_ticket_pb2.EvidencePassage]
    gap: bool
    best_score: float
    policy: _containers.RepeatedCompositeFieldContainer[_ticket_pb2.EvidencePassage]
    def __init__(self, passages: _Optional[_Iterable[_Union[_ticket_pb2.EvidencePassage, _Mapping]]] = ..., gap: bool = ..., best_score: _Optional[float] = ..., policy: _Optional[_Iterable[_Union[_ticket_pb2.EvidencePassage, _Mapping]]] = ...) -> None: ...

class SimilarCasesRequest(_message.Message):
    __slots__ = ("tenant_id", "query", "k")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    query: str
    k: int
    def __init__(self, tenant_id: _Optional[str] = ..., query: _Optional[str] = ..., k: _Optional[int] = ...) -> None: ...

class SimilarCase(_message.Message):
    __slots__ = ("ticket_id", "problem_statement", "resolution_notes", "intent", "score", "similarity")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTES_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    problem_statement: str
    resolution_notes: str
    intent: str
    score: float
    similarity: float
    def __init__(self, ticket_id: _Optional[str] = ..., problem_statement: _Optional[str] = ..., resolution_notes: _Optional[str] = ..., intent: _Optional[str] = ..., score: _Optional[float] = ..., similarity: _Optional[float] = ...) -> None: ...

class SimilarCasesResponse(_message.Message):
    __slots__ = ("cases",)
    CASES_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[SimilarCase]
    def __init__(self, cases: _Optional[_Iterable[_Union[SimilarCase, _Mapping]]] = ...) -> None: ...

class DraftRequest(_message.Message):
    __slots__ = ("ticket", "normalized", "classification")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    ticket: _ticket_pb2.Ticket
    normalized: _ticket_pb2.NormalizedTicket
    classification: _ticket_pb2.Classification
    def __init__(self, ticket: _Optional[_Union[_ticket_pb2.Ticket, _Mapping]] = ..., normalized: _Optional[_Union[_ticket_pb2.NormalizedTicket, _Mapping]] = ..., classification: _Optional[_Union[_ticket_pb2.Classification, _Mapping]] = ...) -> None: ...

class DraftResponse(_message.Message):
    __slots__ = ("draft", "evidence")
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    draft: _ticket_pb2.Draft
    evidence: _containers.RepeatedCompositeFieldContainer[_ticket_pb2.EvidencePassage]
    def __init__(self, draft: _Optional[_Union[_ticket_pb2.Draft, _Mapping]] = ..., evidence: _Optional[_Iterable[_Union[_ticket_pb2.EvidencePassage, _Mapping]]] = ...) -> None: ...

class GetKpisRequest(_message.Message):
    __slots__ = ("tenant_id", "archetype", "segment", "channel")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHETYPE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    archetype: str
    segment: str
    channel: str
    def __init__(self, tenant_id: _Optional[str] = ..., archetype: _Optional[str] = ..., segment: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class KpiRow(_message.Message):
    __slots__ = ("archetype", "segment", "values", "tickets", "channel")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ARCHETYPE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TICKETS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    archetype: str
    segment: str
    values: _containers.ScalarMap[str, float]
    tickets: int
    channel: str
    def __init__(self, archetype: _Optional[str] = ..., segment: _Optional[str] = ..., values: _Optional[_Mapping[str, float]] = ..., tickets: _Optional[int] = ..., channel: _Optional[str] = ...) -> None: ...

class GetKpisResponse(_message.Message):
    __slots__ = ("rows", "computed_at")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_AT_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[KpiRow]
    computed_at: _timestamp_pb2.Timestamp
    def __init__(self, rows: _Optional[_Iterable[_Union[KpiRow, _Mapping]]] = ..., computed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class InvestigateRequest(_message.Message):
    __slots__ = ("ticket", "normalized", "classification")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    ticket: _ticket_pb2.Ticket
    normalized: _ticket_pb2.NormalizedTicket
    classification: _ticket_pb2.Classification
    def __init__(self, ticket: _Optional[_Union[_ticket_pb2.Ticket, _Mapping]] = ..., normalized: _Optional[_Union[_ticket_pb2.NormalizedTicket, _Mapping]] = ..., classification: _Optional[_Union[_ticket_pb2.Classification, _Mapping]] = ...) -> None: ...

class InvestigateResponse(_message.Message):
    __slots__ = ("investigation",)
    INVESTIGATION_FIELD_NUMBER: _ClassVar[int]
    investigation: _events_pb2.Investigation
    def __init__(self, investigation: _Optional[_Union[_events_pb2.Investigation, _Mapping]] = ...) -> None: ...

class RunActionRequest(_message.Message):
    __slots__ = ("tenant_id", "action_id", "tool", "customer_id", "params", "ticket_id")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    action_id: str
    tool: str
    customer_id: str
    params: _containers.ScalarMap[str, str]
    ticket_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., action_id: _Optional[str] = ..., tool: _Optional[str] = ..., customer_id: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., ticket_id: _Optional[str] = ...) -> None: ...

class RunActionResponse(_message.Message):
    __slots__ = ("executed", "status", "reference", "reason", "result")
    class ResultEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXECUTED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    executed: bool
    status: str
    reference: str
    reason: str
    result: _containers.ScalarMap[str, str]
    def __init__(self, executed: bool = ..., status: _Optional[str] = ..., reference: _Optional[str] = ..., reason: _Optional[str] = ..., result: _Optional[_Mapping[str, str]] = ...) -> None: ...
