from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttachLegRequest(_message.Message):
    __slots__ = ("session_id", "offer_sdp")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_SDP_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    offer_sdp: str
    def __init__(self, session_id: _Optional[str] = ..., offer_sdp: _Optional[str] = ...) -> None: ...

class AttachLegResponse(_message.Message):
    __slots__ = ("leg_id", "answer_sdp", "video_send_codec", "video_receive_codecs")
    LEG_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_SDP_FIELD_NUMBER: _ClassVar[int]
    VIDEO_SEND_CODEC_FIELD_NUMBER: _ClassVar[int]
    VIDEO_RECEIVE_CODECS_FIELD_NUMBER: _ClassVar[int]
    leg_id: str
    answer_sdp: str
    video_send_codec: str
    video_receive_codecs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, leg_id: _Optional[str] = ..., answer_sdp: _Optional[str] = ..., video_send_codec: _Optional[str] = ..., video_receive_codecs: _Optional[_Iterable[str]] = ...) -> None: ...

class DetachLegRequest(_message.Message):
    __slots__ = ("leg_id",)
    LEG_ID_FIELD_NUMBER: _ClassVar[int]
    leg_id: str
    def __init__(self, leg_id: _Optional[str] = ...) -> None: ...

class DetachLegResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BridgeRequest(_message.Message):
    __slots__ = ("bridge_id", "leg_id", "side", "peer_edge_id")
    BRIDGE_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PEER_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    bridge_id: int
    leg_id: str
    side: int
    peer_edge_id: str
    def __init__(self, bridge_id: _Optional[int] = ..., leg_id: _Optional[str] = ..., side: _Optional[int] = ..., peer_edge_id: _Optional[str] = ...) -> None: ...

class BridgeResponse(_message.Message):
    __slots__ = ("bridged",)
    BRIDGED_FIELD_NUMBER: _ClassVar[int]
    bridged: float
    def __init__(self, bridged: _Optional[float] = ...) -> None: ...

class UnbridgeRequest(_message.Message):
    __slots__ = ("bridge_id", "side")
    BRIDGE_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    bridge_id: int
    side: int
    def __init__(self, bridge_id: _Optional[int] = ..., side: _Optional[int] = ...) -> None: ...

class UnbridgeResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: BridgeStats
    def __init__(self, stats: _Optional[_Union[BridgeStats, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("bridge_id",)
    BRIDGE_ID_FIELD_NUMBER: _ClassVar[int]
    bridge_id: int
    def __init__(self, bridge_id: _Optional[int] = ...) -> None: ...

class BridgeStats(_message.Message):
    __slots__ = ("bridge_id", "side", "leg_id", "bridged", "first_packet_at_edge", "packets_out", "packets_in", "plis_relayed", "cache_packets_replayed", "bytes_out", "bytes_in", "recovery")
    class RecoveryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BRIDGE_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    LEG_ID_FIELD_NUMBER: _ClassVar[int]
    BRIDGED_FIELD_NUMBER: _ClassVar[int]
    FIRST_PACKET_AT_EDGE_FIELD_NUMBER: _ClassVar[int]
    PACKETS_OUT_FIELD_NUMBER: _ClassVar[int]
    PACKETS_IN_FIELD_NUMBER: _ClassVar[int]
    PLIS_RELAYED_FIELD_NUMBER: _ClassVar[int]
    CACHE_PACKETS_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_FIELD_NUMBER: _ClassVar[int]
    bridge_id: int
    side: int
    leg_id: str
    bridged: float
    first_packet_at_edge: float
    packets_out: int
    packets_in: int
    plis_relayed: int
    cache_packets_replayed: int
    bytes_out: int
    bytes_in: int
    recovery: _containers.ScalarMap[str, int]
    def __init__(self, bridge_id: _Optional[int] = ..., side: _Optional[int] = ..., leg_id: _Optional[str] = ..., bridged: _Optional[float] = ..., first_packet_at_edge: _Optional[float] = ..., packets_out: _Optional[int] = ..., packets_in: _Optional[int] = ..., plis_relayed: _Optional[int] = ..., cache_packets_replayed: _Optional[int] = ..., bytes_out: _Optional[int] = ..., bytes_in: _Optional[int] = ..., recovery: _Optional[_Mapping[str, int]] = ...) -> None: ...

class EdgeStats(_message.Message):
    __slots__ = ("edge_id", "legs", "bridges", "dropped", "backbone_packets_in", "backbone_packets_out", "recovery", "feedback", "backbone_bytes_in", "backbone_bytes_out")
    class DroppedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RecoveryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FeedbackEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    BRIDGES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_PACKETS_IN_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_PACKETS_OUT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    legs: int
    bridges: _containers.RepeatedCompositeFieldContainer[BridgeStats]
    dropped: _containers.ScalarMap[str, int]
    backbone_packets_in: int
    backbone_packets_out: int
    recovery: _containers.ScalarMap[str, int]
    feedback: _containers.ScalarMap[str, int]
    backbone_bytes_in: int
    backbone_bytes_out: int
    def __init__(self, edge_id: _Optional[str] = ..., legs: _Optional[int] = ..., bridges: _Optional[_Iterable[_Union[BridgeStats, _Mapping]]] = ..., dropped: _Optional[_Mapping[str, int]] = ..., backbone_packets_in: _Optional[int] = ..., backbone_packets_out: _Optional[int] = ..., recovery: _Optional[_Mapping[str, int]] = ..., feedback: _Optional[_Mapping[str, int]] = ..., backbone_bytes_in: _Optional[int] = ..., backbone_bytes_out: _Optional[int] = ...) -> None: ...
