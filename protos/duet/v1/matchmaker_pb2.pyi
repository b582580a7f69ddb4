from duet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Scope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCOPE_UNSPECIFIED: _ClassVar[Scope]
    SCOPE_NEAR: _ClassVar[Scope]
    SCOPE_ANYWHERE: _ClassVar[Scope]
SCOPE_UNSPECIFIED: Scope
SCOPE_NEAR: Scope
SCOPE_ANYWHERE: Scope

class ClientMessage(_message.Message):
    __slots__ = ("hello", "offer", "find_partner", "next", "leave", "connect_report", "cancel", "heartbeat", "block", "report", "clock_echo", "add_friend", "call_friend", "answer_call", "cancel_call", "hang_up")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    FIND_PARTNER_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    LEAVE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_REPORT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    CLOCK_ECHO_FIELD_NUMBER: _ClassVar[int]
    ADD_FRIEND_FIELD_NUMBER: _ClassVar[int]
    CALL_FRIEND_FIELD_NUMBER: _ClassVar[int]
    ANSWER_CALL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_CALL_FIELD_NUMBER: _ClassVar[int]
    HANG_UP_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    offer: LegOffer
    find_partner: FindPartner
    next: Next
    leave: Leave
    connect_report: ConnectReport
    cancel: Cancel
    heartbeat: Heartbeat
    block: Block
    report: Report
    clock_echo: ClockEcho
    add_friend: AddFriend
    call_friend: CallFriend
    answer_call: AnswerCall
    cancel_call: CancelCall
    hang_up: HangUp
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., offer: _Optional[_Union[LegOffer, _Mapping]] = ..., find_partner: _Optional[_Union[FindPartner, _Mapping]] = ..., next: _Optional[_Union[Next, _Mapping]] = ..., leave: _Optional[_Union[Leave, _Mapping]] = ..., connect_report: _Optional[_Union[ConnectReport, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., block: _Optional[_Union[Block, _Mapping]] = ..., report: _Optional[_Union[Report, _Mapping]] = ..., clock_echo: _Optional[_Union[ClockEcho, _Mapping]] = ..., add_friend: _Optional[_Union[AddFriend, _Mapping]] = ..., call_friend: _Optional[_Union[CallFriend, _Mapping]] = ..., answer_call: _Optional[_Union[AnswerCall, _Mapping]] = ..., cancel_call: _Optional[_Union[CancelCall, _Mapping]] = ..., hang_up: _Optional[_Union[HangUp, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("edge_assigned", "answer", "queued", "matched", "call_ended", "ticket_closed", "heartbeat_ack", "blocked", "reported", "error", "edge_lost", "clock_probe", "friend_requested", "friend_added", "ringing", "incoming_call", "ring_ended")
    EDGE_ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    CALL_ENDED_FIELD_NUMBER: _ClassVar[int]
    TICKET_CLOSED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EDGE_LOST_FIELD_NUMBER: _ClassVar[int]
    CLOCK_PROBE_FIELD_NUMBER: _ClassVar[int]
    FRIEND_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FRIEND_ADDED_FIELD_NUMBER: _ClassVar[int]
    RINGING_FIELD_NUMBER: _ClassVar[int]
    INCOMING_CALL_FIELD_NUMBER: _ClassVar[int]
    RING_ENDED_FIELD_NUMBER: _ClassVar[int]
    edge_assigned: EdgeAssigned
    answer: LegAnswer
    queued: Queued
    matched: Matched
    call_ended: CallEnded
    ticket_closed: TicketClosed
    heartbeat_ack: HeartbeatAck
    blocked: Blocked
    reported: Reported
    error: Error
    edge_lost: EdgeLost
    clock_probe: ClockProbe
    friend_requested: FriendRequested
    friend_added: FriendAdded
    ringing: Ringing
    incoming_call: IncomingCall
    ring_ended: RingEnded
    def __init__(self, edge_assigned: _Optional[_Union[EdgeAssigned, _Mapping]] = ..., answer: _Optional[_Union[LegAnswer, _Mapping]] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., matched: _Optional[_Union[Matched, _Mapping]] = ..., call_ended: _Optional[_Union[CallEnded, _Mapping]] = ..., ticket_closed: _Optional[_Union[TicketClosed, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., blocked: _Optional[_Union[Blocked, _Mapping]] = ..., reported: _Optional[_Union[Reported, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., edge_lost: _Optional[_Union[EdgeLost, _Mapping]] = ..., clock_probe: _Optional[_Union[ClockProbe, _Mapping]] = ..., friend_requested: _Optional[_Union[FriendRequested, _Mapping]] = ..., friend_added: _Optional[_Union[FriendAdded, _Mapping]] = ..., ringing: _Optional[_Union[Ringing, _Mapping]] = ..., incoming_call: _Optional[_Union[IncomingCall, _Mapping]] = ..., ring_ended: _Optional[_Union[RingEnded, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("user_id", "display_name", "session_open", "clock_probes")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_OPEN_FIELD_NUMBER: _ClassVar[int]
    CLOCK_PROBES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    display_name: str
    session_open: float
    clock_probes: bool
    def __init__(self, user_id: _Optional[str] = ..., display_name: _Optional[str] = ..., session_open: _Optional[float] = ..., clock_probes: _Optional[bool] = ...) -> None: ...

class LegOffer(_message.Message):
    __slots__ = ("sdp",)
    SDP_FIELD_NUMBER: _ClassVar[int]
    sdp: str
    def __init__(self, sdp: _Optional[str] = ...) -> None: ...

class FindPartner(_message.Message):
    __slots__ = ("leg_connected", "preferences")
    LEG_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    leg_connected: float
    preferences: Preferences
    def __init__(self, leg_connected: _Optional[float] = ..., preferences: _Optional[_Union[Preferences, _Mapping]] = ...) -> None: ...

class Preferences(_message.Message):
    __slots__ = ("languages", "interests", "gender", "want_genders", "age_band", "want_age_bands", "scope")
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    INTERESTS_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    WANT_GENDERS_FIELD_NUMBER: _ClassVar[int]
    AGE_BAND_FIELD_NUMBER: _ClassVar[int]
    WANT_AGE_BANDS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    languages: _containers.RepeatedScalarFieldContainer[str]
    interests: _containers.RepeatedScalarFieldContainer[str]
    gender: str
    want_genders: _containers.RepeatedScalarFieldContainer[str]
    age_band: str
    want_age_bands: _containers.RepeatedScalarFieldContainer[str]
    scope: Scope
    def __init__(self, languages: _Optional[_Iterable[str]] = ..., interests: _Optional[_Iterable[str]] = ..., gender: _Optional[str] = ..., want_genders: _Optional[_Iterable[str]] = ..., age_band: _Optional[str] = ..., want_age_bands: _Optional[_Iterable[str]] = ..., scope: _Optional[_Union[Scope, str]] = ...) -> None: ...

class Next(_message.Message):
    __slots__ = ("preferences",)
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    preferences: Preferences
    def __init__(self, preferences: _Optional[_Union[Preferences, _Mapping]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Block(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("call_id", "reason")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    reason: str
    def __init__(self, call_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("ticket_id", "queued", "position", "estimated_wait_ms", "expires")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    queued: float
    position: int
    estimated_wait_ms: float
    expires: float
    def __init__(self, ticket_id: _Optional[str] = ..., queued: _Optional[float] = ..., position: _Optional[int] = ..., estimated_wait_ms: _Optional[float] = ..., expires: _Optional[float] = ...) -> None: ...

class TicketClosed(_message.Message):
    __slots__ = ("ticket_id", "reason")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ticket_id: str
    reason: str
    def __init__(self, ticket_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("server_time", "ticket_id", "position", "estimated_wait_ms")
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    server_time: float
    ticket_id: str
    position: int
    estimated_wait_ms: float
    def __init__(self, server_time: _Optional[float] = ..., ticket_id: _Optional[str] = ..., position: _Optional[int] = ..., estimated_wait_ms: _Optional[float] = ...) -> None: ...

class Blocked(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class Reported(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "request")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    request: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., request: _Optional[str] = ...) -> None: ...

class ClockProbe(_message.Message):
    __slots__ = ("probe_id", "server_send")
    PROBE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_SEND_FIELD_NUMBER: _ClassVar[int]
    probe_id: int
    server_send: float
    def __init__(self, probe_id: _Optional[int] = ..., server_send: _Optional[float] = ...) -> None: ...

class ClockEcho(_message.Message):
    __slots__ = ("probe_id", "client_receive", "client_send")
    PROBE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_RECEIVE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEND_FIELD_NUMBER: _ClassVar[int]
    probe_id: int
    client_receive: float
    client_send: float
    def __init__(self, probe_id: _Optional[int] = ..., client_receive: _Optional[float] = ..., client_send: _Optional[float] = ...) -> None: ...

class PartnerProfile(_message.Message):
    __slots__ = ("display_name", "region", "shared_interests", "languages")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SHARED_INTERESTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    region: str
    shared_interests: _containers.RepeatedScalarFieldContainer[str]
    languages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, display_name: _Optional[str] = ..., region: _Optional[str] = ..., shared_interests: _Optional[_Iterable[str]] = ..., languages: _Optional[_Iterable[str]] = ...) -> None: ...

class Matched(_message.Message):
    __slots__ = ("call_id", "partner_display_name", "partner_region", "route", "route_rtt_ms", "stages", "partner", "predicted_connect_ms", "friend_call")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    PARTNER_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PARTNER_REGION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    PARTNER_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CONNECT_MS_FIELD_NUMBER: _ClassVar[int]
    FRIEND_CALL_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    partner_display_name: str
    partner_region: str
    route: _containers.RepeatedScalarFieldContainer[str]
    route_rtt_ms: float
    stages: _common_pb2.StageTimes
    partner: PartnerProfile
    predicted_connect_ms: float
    friend_call: bool
    def __init__(self, call_id: _Optional[str] = ..., partner_display_name: _Optional[str] = ..., partner_region: _Optional[str] = ..., route: _Optional[_Iterable[str]] = ..., route_rtt_ms: _Optional[float] = ..., stages: _Optional[_Union[_common_pb2.StageTimes, _Mapping]] = ..., partner: _Optional[_Union[PartnerProfile, _Mapping]] = ..., predicted_connect_ms: _Optional[float] = ..., friend_call: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("user_id", "edge_id", "leg_id", "stages", "connect_ms", "total_ms", "clock_synced", "clock_offset_ms", "clock_uncertainty_ms")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CONNECT_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SYNCED_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_UNCERTAINTY_MS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    edge_id: str
    leg_id: str
    stages: _common_pb2.StageTimes
    connect_ms: float
    total_ms: float
    clock_synced: bool
    clock_offset_ms: float
    clock_uncertainty_ms: float
    def __init__(self, user_id: _Optional[str] = ..., edge_id: _Optional[str] = ..., leg_id: _Optional[str] = ..., stages: _Optional[_Union[_common_pb2.StageTimes, _Mapping]] = ..., connect_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., clock_synced: _Optional[bool] = ..., clock_offset_ms: _Optional[float] = ..., clock_uncertainty_ms: _Optional[float] = ...) -> None: ...

class CallRecord(_message.Message):
    __slots__ = ("call_id", "a", "b", "route", "route_rtt_ms", "state", "end_reason", "created_at", "ended_at", "kind", "duration_ms")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_RTT_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    a: CallSide
    b: CallSide
    route: _containers.RepeatedScalarFieldContainer[str]
    route_rtt_ms: float
    state: str
    end_reason: str
    created_at: float
    ended_at: float
    kind: str
    duration_ms: float
    def __init__(self, call_id: _Optional[str] = ..., a: _Optional[_Union[CallSide, _Mapping]] = ..., b: _Optional[_Union[CallSide, _Mapping]] = ..., route: _Optional[_Iterable[str]] = ..., route_rtt_ms: _Optional[float] = ..., state: _Optional[str] = ..., end_reason: _Optional[str] = ..., created_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., kind: _Optional[str] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class ListCallsRequest(_message.Message):
    __slots__ = ("limit", "user_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    user_id: str
    def __init__(self, limit: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListCallsResponse(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CallRecord]
    def __init__(self, calls: _Optional[_Iterable[_Union[CallRecord, _Mapping]]] = ...) -> None: ...

class AddFriend(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class FriendRequested(_message.Message):
    __slots__ = ("call_id", "friends")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    FRIENDS_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    friends: bool
    def __init__(self, call_id: _Optional[str] = ..., friends: _Optional[bool] = ...) -> None: ...

class FriendAdded(_message.Message):
    __slots__ = ("friend", "call_id")
    FRIEND_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    friend: Friend
    call_id: str
    def __init__(self, friend: _Optional[_Union[Friend, _Mapping]] = ..., call_id: _Optional[str] = ...) -> None: ...

class Friend(_message.Message):
    __slots__ = ("user_id", "display_name", "online", "busy", "since")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    display_name: str
    online: bool
    busy: bool
    since: float
    def __init__(self, user_id: _Optional[str] = ..., display_name: _Optional[str] = ..., online: _Optional[bool] = ..., busy: _Optional[bool] = ..., since: _Optional[float] = ...) -> None: ...

class CallFriend(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class Ringing(_message.Message):
    __slots__ = ("request_id", "friend", "expires")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FRIEND_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    friend: Friend
    expires: float
    def __init__(self, request_id: _Optional[str] = ..., friend: _Optional[_Union[Friend, _Mapping]] = ..., expires: _Optional[float] = ...) -> None: ...

class IncomingCall(_message.Message):
    __slots__ = ("request_id", "caller", "caller_user_id", "expires")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CALLER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    caller: PartnerProfile
    caller_user_id: str
    expires: float
    def __init__(self, request_id: _Optional[str] = ..., caller: _Optional[_Union[PartnerProfile, _Mapping]] = ..., caller_user_id: _Optional[str] = ..., expires: _Optional[float] = ...) -> None: ...

class AnswerCall(_message.Message):
    __slots__ = ("request_id", "accept")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    accept: bool
    def __init__(self, request_id: _Optional[str] = ..., accept: _Optional[bool] = ...) -> None: ...

class CancelCall(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class HangUp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RingEnded(_message.Message):
    __slots__ = ("request_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListFriendsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFriendsResponse(_message.Message):
    __slots__ = ("friends",)
    FRIENDS_FIELD_NUMBER: _ClassVar[int]
    friends: _containers.RepeatedCompositeFieldContainer[Friend]
    def __init__(self, friends: _Optional[_Iterable[_Union[Friend, _Mapping]]] = ...) -> None: ...

class RemoveFriendRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class RemoveFriendResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
