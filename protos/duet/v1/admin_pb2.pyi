from duet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREDICTION_STATE_UNSPECIFIED: _ClassVar[PredictionState]
    PREDICTION_STATE_PREDICTED: _ClassVar[PredictionState]
    PREDICTION_STATE_UNREACHABLE: _ClassVar[PredictionState]
    PREDICTION_STATE_ABSENT: _ClassVar[PredictionState]
PREDICTION_STATE_UNSPECIFIED: PredictionState
PREDICTION_STATE_PREDICTED: PredictionState
PREDICTION_STATE_UNREACHABLE: PredictionState
PREDICTION_STATE_ABSENT: PredictionState

class ImpactOptions(_message.Message):
    __slots__ = ("matchmaker_region", "last_mile_ms")
    MATCHMAKER_REGION_FIELD_NUMBER: _ClassVar[int]
    LAST_MILE_MS_FIELD_NUMBER: _ClassVar[int]
    matchmaker_region: str
    last_mile_ms: float
    def __init__(self, matchmaker_region: _Optional[str] = ..., last_mile_ms: _Optional[float] = ...) -> None: ...

class GetTopologyFileRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopologyFile(_message.Message):
    __slots__ = ("version", "text")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    version: int
    text: str
    def __init__(self, version: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class ApplyTopologyRequest(_message.Message):
    __slots__ = ("text", "source_name", "dry_run", "expected_version", "impact")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    text: str
    source_name: str
    dry_run: bool
    expected_version: int
    impact: ImpactOptions
    def __init__(self, text: _Optional[str] = ..., source_name: _Optional[str] = ..., dry_run: _Optional[bool] = ..., expected_version: _Optional[int] = ..., impact: _Optional[_Union[ImpactOptions, _Mapping]] = ...) -> None: ...

class SetEdgeStateRequest(_message.Message):
    __slots__ = ("edge_id", "state", "impact")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    state: _common_pb2.EdgeState
    impact: ImpactOptions
    def __init__(self, edge_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.EdgeState, str]] = ..., impact: _Optional[_Union[ImpactOptions, _Mapping]] = ...) -> None: ...

class SetLinkRequest(_message.Message):
    __slots__ = ("a", "b", "rtt_ms", "loss", "up", "impact")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    rtt_ms: float
    loss: float
    up: bool
    impact: ImpactOptions
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., rtt_ms: _Optional[float] = ..., loss: _Optional[float] = ..., up: _Optional[bool] = ..., impact: _Optional[_Union[ImpactOptions, _Mapping]] = ...) -> None: ...

class PairImpact(_message.Message):
    __slots__ = ("region_a", "region_b", "before_ms", "after_ms", "before_state", "after_state")
    REGION_A_FIELD_NUMBER: _ClassVar[int]
    REGION_B_FIELD_NUMBER: _ClassVar[int]
    BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_STATE_FIELD_NUMBER: _ClassVar[int]
    AFTER_STATE_FIELD_NUMBER: _ClassVar[int]
    region_a: str
    region_b: str
    before_ms: float
    after_ms: float
    before_state: PredictionState
    after_state: PredictionState
    def __init__(self, region_a: _Optional[str] = ..., region_b: _Optional[str] = ..., before_ms: _Optional[float] = ..., after_ms: _Optional[float] = ..., before_state: _Optional[_Union[PredictionState, str]] = ..., after_state: _Optional[_Union[PredictionState, str]] = ...) -> None: ...

class TopologyChangeResult(_message.Message):
    __slots__ = ("applied", "version_before", "version_after", "changes", "warnings", "impact", "change_id", "matchmaker_region")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    VERSION_BEFORE_FIELD_NUMBER: _ClassVar[int]
    VERSION_AFTER_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHMAKER_REGION_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    version_before: int
    version_after: int
    changes: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    impact: _containers.RepeatedCompositeFieldContainer[PairImpact]
    change_id: int
    matchmaker_region: str
    def __init__(self, applied: _Optional[bool] = ..., version_before: _Optional[int] = ..., version_after: _Optional[int] = ..., changes: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., impact: _Optional[_Iterable[_Union[PairImpact, _Mapping]]] = ..., change_id: _Optional[int] = ..., matchmaker_region: _Optional[str] = ...) -> None: ...

class ListTopologyChangesRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class TopologyChange(_message.Message):
    __slots__ = ("change_id", "applied_at_ms", "actor", "action", "changes", "version_before", "version_after")
    CHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    VERSION_BEFORE_FIELD_NUMBER: _ClassVar[int]
    VERSION_AFTER_FIELD_NUMBER: _ClassVar[int]
    change_id: int
    applied_at_ms: int
    actor: str
    action: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    version_before: int
    version_after: int
    def __init__(self, change_id: _Optional[int] = ..., applied_at_ms: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ..., version_before: _Optional[int] = ..., version_after: _Optional[int] = ...) -> None: ...

class ListTopologyChangesResponse(_message.Message):
    __slots__ = ("changes", "durable")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[TopologyChange]
    durable: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[TopologyChange, _Mapping]]] = ..., durable: _Optional[bool] = ...) -> None: ...
