from duet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProbeResult(_message.Message):
    __slots__ = ("edge_id", "rtt_ms")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    rtt_ms: float
    def __init__(self, edge_id: _Optional[str] = ..., rtt_ms: _Optional[float] = ...) -> None: ...

class PickIngressRequest(_message.Message):
    __slots__ = ("client_ip", "probes")
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    client_ip: str
    probes: _containers.RepeatedCompositeFieldContainer[ProbeResult]
    def __init__(self, client_ip: _Optional[str] = ..., probes: _Optional[_Iterable[_Union[ProbeResult, _Mapping]]] = ...) -> None: ...

class PickIngressResponse(_message.Message):
    __slots__ = ("edge", "estimated_rtt_ms", "client_region", "reason")
    EDGE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REGION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    edge: _common_pb2.EdgeRef
    estimated_rtt_ms: float
    client_region: str
    reason: str
    def __init__(self, edge: _Optional[_Union[_common_pb2.EdgeRef, _Mapping]] = ..., estimated_rtt_ms: _Optional[float] = ..., client_region: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PickRouteRequest(_message.Message):
    __slots__ = ("from_edge_id", "to_edge_id")
    FROM_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    from_edge_id: str
    to_edge_id: str
    def __init__(self, from_edge_id: _Optional[str] = ..., to_edge_id: _Optional[str] = ...) -> None: ...

class PickRouteResponse(_message.Message):
    __slots__ = ("path", "rtt_ms")
    PATH_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    path: _containers.RepeatedScalarFieldContainer[str]
    rtt_ms: float
    def __init__(self, path: _Optional[_Iterable[str]] = ..., rtt_ms: _Optional[float] = ...) -> None: ...

class WatchRoutesRequest(_message.Message):
    __slots__ = ("edge_id", "deltas")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    deltas: bool
    def __init__(self, edge_id: _Optional[str] = ..., deltas: _Optional[bool] = ...) -> None: ...

class NextHop(_message.Message):
    __slots__ = ("dest_edge_id", "dest_number", "next_hop_edge_id", "next_hop_backbone_address", "path_rtt_ms")
    DEST_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    DEST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    NEXT_HOP_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_HOP_BACKBONE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PATH_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    dest_edge_id: str
    dest_number: int
    next_hop_edge_id: str
    next_hop_backbone_address: str
    path_rtt_ms: float
    def __init__(self, dest_edge_id: _Optional[str] = ..., dest_number: _Optional[int] = ..., next_hop_edge_id: _Optional[str] = ..., next_hop_backbone_address: _Optional[str] = ..., path_rtt_ms: _Optional[float] = ...) -> None: ...

class RouteTable(_message.Message):
    __slots__ = ("edge_id", "version", "entries", "delta", "removed_dest_edge_ids", "table_size")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    REMOVED_DEST_EDGE_IDS_FIELD_NUMBER: _ClassVar[int]
    TABLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    version: int
    entries: _containers.RepeatedCompositeFieldContainer[NextHop]
    delta: bool
    removed_dest_edge_ids: _containers.RepeatedScalarFieldContainer[str]
    table_size: int
    def __init__(self, edge_id: _Optional[str] = ..., version: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[NextHop, _Mapping]]] = ..., delta: _Optional[bool] = ..., removed_dest_edge_ids: _Optional[_Iterable[str]] = ..., table_size: _Optional[int] = ...) -> None: ...

class GetTopologyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Region(_message.Message):
    __slots__ = ("name", "lat", "lon")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    name: str
    lat: float
    lon: float
    def __init__(self, name: _Optional[str] = ..., lat: _Optional[float] = ..., lon: _Optional[float] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("a", "b", "rtt_ms", "loss", "up")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    rtt_ms: float
    loss: float
    up: bool
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., rtt_ms: _Optional[float] = ..., loss: _Optional[float] = ..., up: _Optional[bool] = ...) -> None: ...

class Topology(_message.Message):
    __slots__ = ("version", "regions", "edges", "links")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    version: int
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    edges: _containers.RepeatedCompositeFieldContainer[_common_pb2.EdgeRef]
    links: _containers.RepeatedCompositeFieldContainer[Link]
    def __init__(self, version: _Optional[int] = ..., regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[_common_pb2.EdgeRef, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[Link, _Mapping]]] = ...) -> None: ...

class RegisterEdgeRequest(_message.Message):
    __slots__ = ("edge_id", "control_address", "backbone_address", "media_host")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEDIA_HOST_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    control_address: str
    backbone_address: str
    media_host: str
    def __init__(self, edge_id: _Optional[str] = ..., control_address: _Optional[str] = ..., backbone_address: _Optional[str] = ..., media_host: _Optional[str] = ...) -> None: ...

class RegisterEdgeResponse(_message.Message):
    __slots__ = ("edge",)
    EDGE_FIELD_NUMBER: _ClassVar[int]
    edge: _common_pb2.EdgeRef
    def __init__(self, edge: _Optional[_Union[_common_pb2.EdgeRef, _Mapping]] = ...) -> None: ...

class LinkMeasurement(_message.Message):
    __slots__ = ("peer_edge_id", "rtt_ms", "loss", "reachable")
    PEER_EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    peer_edge_id: str
    rtt_ms: float
    loss: float
    reachable: bool
    def __init__(self, peer_edge_id: _Optional[str] = ..., rtt_ms: _Optional[float] = ..., loss: _Optional[float] = ..., reachable: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("edge_id", "legs", "bridges", "cpu", "links", "stalled_ms")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    BRIDGES_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    STALLED_MS_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    legs: int
    bridges: int
    cpu: float
    links: _containers.RepeatedCompositeFieldContainer[LinkMeasurement]
    stalled_ms: float
    def __init__(self, edge_id: _Optional[str] = ..., legs: _Optional[int] = ..., bridges: _Optional[int] = ..., cpu: _Optional[float] = ..., links: _Optional[_Iterable[_Union[LinkMeasurement, _Mapping]]] = ..., stalled_ms: _Optional[float] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("neighbours",)
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    neighbours: _containers.RepeatedCompositeFieldContainer[_common_pb2.EdgeRef]
    def __init__(self, neighbours: _Optional[_Iterable[_Union[_common_pb2.EdgeRef, _Mapping]]] = ...) -> None: ...

class WatchMembershipRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MembershipEvent(_message.Message):
    __slots__ = ("edge_id", "alive", "reason")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    alive: bool
    reason: str
    def __init__(self, edge_id: _Optional[str] = ..., alive: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...
