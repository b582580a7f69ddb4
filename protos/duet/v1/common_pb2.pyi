from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EdgeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDGE_STATE_UNSPECIFIED: _ClassVar[EdgeState]
    EDGE_STATE_ACTIVE: _ClassVar[EdgeState]
    EDGE_STATE_DRAINING: _ClassVar[EdgeState]
    EDGE_STATE_DOWN: _ClassVar[EdgeState]
EDGE_STATE_UNSPECIFIED: EdgeState
EDGE_STATE_ACTIVE: EdgeState
EDGE_STATE_DRAINING: EdgeState
EDGE_STATE_DOWN: EdgeState

class StageTimes(_message.Message):
    __slots__ = ("session_open", "edge_assigned", "leg_connected", "queued", "matched", "route_picked", "bridged", "first_packet_at_edge", "first_frame")
    SESSION_OPEN_FIELD_NUMBER: _ClassVar[int]
    EDGE_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    LEG_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    ROUTE_PICKED_FIELD_NUMBER: _ClassVar[int]
    BRIDGED_FIELD_NUMBER: _ClassVar[int]
    FIRST_PACKET_AT_EDGE_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    session_open: float
    edge_assigned: float
    leg_connected: float
    queued: float
    matched: float
    route_picked: float
    bridged: float
    first_packet_at_edge: float
    first_frame: float
    def __init__(self, session_open: _Optional[float] = ..., edge_assigned: _Optional[float] = ..., leg_connected: _Optional[float] = ..., queued: _Optional[float] = ..., matched: _Optional[float] = ..., route_picked: _Optional[float] = ..., bridged: _Optional[float] = ..., first_packet_at_edge: _Optional[float] = ..., first_frame: _Optional[float] = ...) -> None: ...

class EdgeRef(_message.Message):
    __slots__ = ("edge_id", "number", "region", "control_address", "backbone_address", "media_host", "state")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CONTROL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_HOST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    number: int
    region: str
    control_address: str
    backbone_address: str
    media_host: str
    state: EdgeState
    def __init__(self, edge_id: _Optional[str] = ..., number: _Optional[int] = ..., region: _Optional[str] = ..., control_address: _Optional[str] = ..., backbone_address: _Optional[str] = ..., media_host: _Optional[str] = ..., state: _Optional[_Union[EdgeState, str]] = ...) -> None: ...
