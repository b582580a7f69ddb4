from duet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientMessage(_message.Message):
    __slots__ = ("hello", "offer", "find_partner", "next", "leave", "connect_report")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    FIND_PARTNER_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    LEAVE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_REPORT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    offer: LegOffer
    find_partner: FindPartner
    next: Next
    leave: Leave
    connect_report: ConnectReport
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., offer: _Optional[_Union[LegOffer, _Mapping]] = ..., find_partner: _Optional[_Union[FindPartner, _Mapping]] = ..., next: _Optional[_Union[Next, _Mapping]] = ..., leave: _Optional[_Union[Leave, _Mapping]] = ..., connect_report: _Optional[_Union[ConnectReport, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("edge_assigned", "answer", "queued", "matched", "call_ended", "edge_lost")
    EDGE_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    CALL_ENDED_FIELD_NUMBER: _ClassVar[int]
    EDGE_LOST_FIELD_NUMBER: _ClassVar[int]
    edge_assigned: EdgeAssigned
    answer: LegAnswer
    queued: Queued
    matched: Matched
    call_ended: CallEnded
    edge_lost: EdgeLost
    def __init__(self, edge_assigned: _Optional[_Union[EdgeAssigned, _Mapping]] = ..., answer: _Optional[_Union[LegAnswer, _Mapping]] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., matched: _Optional[_Union[Matched, _Mapping]] = ..., call_ended: _Optional[_Union[CallEnded, _Mapping]] = ..., edge_lost: _Optional[_Union[EdgeLost, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("user_id", "display_name", "session_open")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_OPEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    display_name: str
    session_open: float
    def __init__(self, user_id: _Optional[str] = ..., display_name: _Optional[str] = ..., session_open: _Optional[float] = ...) -> None: ...

class LegOffer(_message.Message):
    __slots__ = ("sdp",)
    SDP_FIELD_NUMBER: _ClassVar[int]
    sdp: str
    def __init__(self, sdp: _Optional[str] = ...) -> None: ...

class FindPartner(_message.Message):
    __slots__ = ("leg_connected",)
    LEG_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    leg_connected: float
    def __init__(self, leg_connected: _Optional[float] = ...) -> None: ...

class Next(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Leave(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConnectReport(_message.Message):
    __slots__ = ("call_id", "stages", "connected")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    stages: _common_pb2.StageTimes
    connected: bool
    def __init__(self, call_id: _Optional[str] = ..., stages: _Optional[_Union[_common_pb2.StageTimes, _Mapping]] = ..., connected: _Optional[bool] = ...) -> None: ...

class EdgeAssigned(_message.Message):
    __slots__ = ("session_id", "edge", "reason", "edge_assigned")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EDGE_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    edge: _common_pb2.EdgeRef
    reason: str
    edge_assigned: float
    def __init__(self, session_id: _Optional[str] = ..., edge: _Optional[_Union[_common_pb2.EdgeRef, _Mapping]] = ..., reason: _Optional[str] = ..., edge_assigned: _Optional[float] = ...) -> None: ...

class EdgeLost(_message.Message):
    __slots__ = ("edge_id", "reason")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    reason: str
    def __init__(self, edge_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LegAnswer(_message.Message):
    __slots__ = ("leg_id", "sdp")
    LEG_ID_FIELD_NUMBER: _ClassVar[int]
    SDP_FIELD_NUMBER: _ClassVar[int]
    leg_id: str
    sdp: str
    def __init__(self, leg_id: _Optional[str] = ..., sdp: _Optional[str] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("ticket_id", "queued")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    queued: float
    def __init__(self, ticket_id: _Optional[str] = ..., queued: _Optional[float] = ...) -> None: ...

class Matched(_message.Message):
    __slots__ = ("call_id", "partner_display_name", "partner_region", "route", "route_rtt_ms", "stages")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    PARTNER_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PARTNER_REGION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    partner_display_name: str
    partner_region: str
    route: _containers.RepeatedScalarFieldContainer[str]
    route_rtt_ms: float
    stages: _common_pb2.StageTimes
    def __init__(self, call_id: _Optional[str] = ..., partner_display_name: _Optional[str] = ..., partner_region: _Optional[str] = ..., route: _Optional[_Iterable[str]] = ..., route_rtt_ms: _Optional[float] = ..., stages: _Optional[_Union[_common_pb2.StageTimes, _Mapping]] = ...) -> None: ...

class CallEnded(_message.Message):
    __slots__ = ("call_id", "reason")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    reason: str
    def __init__(self, call_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetCallRequest(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class CallSide(_message.Message):
    __slots__ = ("user_id", "edge_id", "leg_id", "stages", "connect_ms", "total_ms")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CONNECT_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    edge_id: str
    leg_id: str
    stages: _common_pb2.StageTimes
    connect_ms: float
    total_ms: float
    def __init__(self, user_id: _Optional[str] = ..., edge_id: _Optional[str] = ..., leg_id: _Optional[str] = ..., stages: _Optional[_Union[_common_pb2.StageTimes, _Mapping]] = ..., connect_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class CallRecord(_message.Message):
    __slots__ = ("call_id", "a", "b", "route", "route_rtt_ms", "state", "end_reason")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    a: CallSide
    b: CallSide
    route: _containers.RepeatedScalarFieldContainer[str]
    route_rtt_ms: float
    state: str
    end_reason: str
    def __init__(self, call_id: _Optional[str] = ..., a: _Optional[_Union[CallSide, _Mapping]] = ..., b: _Optional[_Union[CallSide, _Mapping]] = ..., route: _Optional[_Iterable[str]] = ..., route_rtt_ms: _Optional[float] = ..., state: _Optional[str] = ..., end_reason: _Optional[str] = ...) -> None: ...
