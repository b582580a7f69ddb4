"""The gRPC face of the matchmaker without a server: domain errors -> status codes, events ->
ServerMessages, call records -> CallRecords."""

from __future__ import annotations

import grpc
import pytest

from duet.services.matchmaker.errors import (
    BadRequest,
    Forbidden,
    HeldForReview,
    MatchmakerError,
    NotFound,
    RateLimited,
    Unavailable,
    WrongState,
)
from duet.services.matchmaker.events import (
    CallEnded,
    EdgeAssigned,
    Friend,
    FriendAdded,
    FriendRequested,
    IncomingCall,
    LegAnswered,
    Matched,
    PartnerProfile,
    Queued,
    RingEnded,
    Ringing,
    SessionEvent,
)
from duet.services.matchmaker.ports import EdgeInfo, EdgeState, PeerUnavailable
from duet.services.matchmaker.server import STATUS, Abort, abort_for, call_record, server_message
from duet.services.store.records import CallRow
from duet.v1 import common_pb2, matchmaker_pb2

Code = grpc.StatusCode
FRA = EdgeInfo("fra-1", 1, "Frankfurt", "127.0.0.1:1", "127.0.0.1:11", "10.0.0.1", EdgeState.DRAINING)


# -- errors -> status codes ----------------------------------------------------------


def test_each_error_kind_has_the_status_clients_rely_on() -> None:
    assert {
        BadRequest: Code.INVALID_ARGUMENT,
        WrongState: Code.FAILED_PRECONDITION,
        NotFound: Code.NOT_FOUND,
        Forbidden: Code.PERMISSION_DENIED,
        Unavailable: Code.UNAVAILABLE,
        RateLimited: Code.RESOURCE_EXHAUSTED,
        HeldForReview: Code.PERMISSION_DENIED,
    } == STATUS
    # A new kind must be given a status here, not fall through to INTERNAL.
    assert set(MatchmakerError.__subclasses__()) == set(STATUS)
    for kind, code in STATUS.items():
        assert abort_for(kind("why")) == Abort(code, "why")


def test_other_failures_end_a_session_as_unavailable_or_internal() -> None:
    assert abort_for(PeerUnavailable("edge gone")) == Abort(Code.UNAVAILABLE, "a backing service failed: edge gone")
    assert abort_for(RuntimeError("boom")) == Abort(Code.INTERNAL, "session failed unexpectedly: RuntimeError('boom')")


# -- values -> protobuf -------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            EdgeAssigned(session_id="s1", edge=FRA, reason="geoip: Frankfurt", assigned_at=1000.5),
            matchmaker_pb2.ServerMessage(
                edge_assigned=matchmaker_pb2.EdgeAssigned(
                    session_id="s1",
                    edge=common_pb2.EdgeRef(
                        edge_id="fra-1",
                        number=1,
                        region="Frankfurt",
                        control_address="127.0.0.1:1",
                        backbone_address="127.0.0.1:11",
                        media_host="10.0.0.1",
                        state=common_pb2.EDGE_STATE_DRAINING,
                    ),
                    reason="geoip: Frankfurt",
                    edge_assigned=1000.5,
                )
            ),
        ),
        (
            LegAnswered(leg_id="leg1", answer_sdp="v=0 answer"),
            matchmaker_pb2.ServerMessage(answer=matchmaker_pb2.LegAnswer(leg_id="leg1", sdp="v=0 answer")),
        ),
        (
            Queued(ticket_id="t1", queued_at=2000.0, position=3, estimated_wait_ms=1500.0, expires_at=122000.0),
            matchmaker_pb2.ServerMessage(
                queued=matchmaker_pb2.Queued(
                    ticket_id="t1", queued=2000.0, position=3, estimated_wait_ms=1500.0, expires=122000.0
                )
            ),
        ),
        (
            Matched(
                call_id="c1",
                partner_display_name="Ben",
                partner_region="Virginia",
                route=("fra-1", "vir-1"),
                route_rtt_ms=80.0,
                stages={"queued": 1.0, "bridged": 4.0, "not_a_stage": 9.0},
            ),
            matchmaker_pb2.ServerMessage(
                matched=matchmaker_pb2.Matched(
                    call_id="c1",
                    partner_display_name="Ben",
                    partner_region="Virginia",
                    route=["fra-1", "vir-1"],
                    route_rtt_ms=80.0,
                    stages=common_pb2.StageTimes(queued=1.0, bridged=4.0),
                )
            ),
        ),
        (
            CallEnded(reason="partner_next", call_id="c1"),
            matchmaker_pb2.ServerMessage(call_ended=matchmaker_pb2.CallEnded(call_id="c1", reason="partner_next")),
        ),
        (
            CallEnded(reason="bridge failed: leg not ready"),
            matchmaker_pb2.ServerMessage(call_ended=matchmaker_pb2.CallEnded(reason="bridge failed: leg not ready")),
        ),
    ],
    ids=lambda v: type(v).__name__,
)
def test_events_become_server_messages(event: SessionEvent, expected: matchmaker_pb2.ServerMessage) -> None:
    assert server_message(event) == expected


def test_a_call_row_becomes_a_call_record() -> None:
    row = CallRow(
        call_id="c1",
        user_a="ana",
        user_b="ben",
        edge_a="fra-1",
        edge_b="vir-1",
        leg_a="leg1",
        leg_b="leg2",
        route=["fra-1", "vir-1"],
        route_rtt_ms=80.0,
        state="connected",
        stages_a={"queued": 1000.0, "matched": 1500.0, "first_frame": 1800.0},
        stages_b={"queued": 1200.0, "matched": 1500.0},  # no frame yet
    )
    record = call_record(row)
    assert record.call_id == "c1" and list(record.route) == ["fra-1", "vir-1"] and record.route_rtt_ms == 80.0
    assert (record.state, record.end_reason) == ("connected", "")
    assert (record.a.user_id, record.a.edge_id, record.a.leg_id) == ("ana", "fra-1", "leg1")
    assert record.a.stages == common_pb2.StageTimes(queued=1000.0, matched=1500.0, first_frame=1800.0)
    assert (record.a.connect_ms, record.a.total_ms) == (300.0, 800.0)
    assert (record.b.connect_ms, record.b.total_ms) == (0.0, 0.0)
    assert (record.kind, record.created_at, record.ended_at, record.duration_ms) == ("match", 0.0, 0.0, 0.0)


def test_an_ended_friend_call_row_carries_kind_times_and_duration() -> None:
    row = CallRow(
        call_id="c2",
        user_a="ana",
        user_b="ben",
        edge_a="fra-1",
        edge_b="fra-1",
        leg_a="l1",
        leg_b="l2",
        route=["fra-1"],
        route_rtt_ms=0.0,
        state="ended",
        end_reason="hung_up",
        kind="friend",
        created_at=1000.0,
        ended_at=1012.5,
        duration_ms=12500.0,
    )
    record = call_record(row)
    assert (record.kind, record.end_reason, record.duration_ms) == ("friend", "hung_up", 12500.0)
    assert (record.created_at, record.ended_at) == (1_000_000.0, 1_012_500.0)  # epoch ms


FRIEND = Friend(user_id="ben", display_name="Ben", online=True, busy=False, since=1500.0)
FRIEND_PB = matchmaker_pb2.Friend(user_id="ben", display_name="Ben", online=True, since=1500.0)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            FriendRequested("c1", True),
            matchmaker_pb2.ServerMessage(friend_requested={"call_id": "c1", "friends": True}),
        ),
        (
            FriendAdded(FRIEND, "c1"),
            matchmaker_pb2.ServerMessage(friend_added=matchmaker_pb2.FriendAdded(friend=FRIEND_PB, call_id="c1")),
        ),
        (
            Ringing("r1", FRIEND, 31_000.0),
            matchmaker_pb2.ServerMessage(
                ringing=matchmaker_pb2.Ringing(request_id="r1", friend=FRIEND_PB, expires=31_000.0)
            ),
        ),
        (
            IncomingCall("r1", PartnerProfile("Ana", "Frankfurt", (), ("en",)), "ana", 31_000.0),
            matchmaker_pb2.ServerMessage(
                incoming_call=matchmaker_pb2.IncomingCall(
                    request_id="r1",
                    caller=matchmaker_pb2.PartnerProfile(display_name="Ana", region="Frankfurt", languages=["en"]),
                    caller_user_id="ana",
                    expires=31_000.0,
                )
            ),
        ),
        (
            RingEnded("r1", "declined"),
            matchmaker_pb2.ServerMessage(ring_ended=matchmaker_pb2.RingEnded(request_id="r1", reason="declined")),
        ),
    ],
    ids=lambda v: type(v).__name__,
)
def test_friends_events_become_server_messages(event: SessionEvent, expected: matchmaker_pb2.ServerMessage) -> None:
    assert server_message(event) == expected


# -- the service over gRPC ------------------------------------------------------------
