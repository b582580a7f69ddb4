"""The gRPC face of the matchmaker: domain errors -> status codes, events -> ServerMessages,
call records -> CallRecords, and the Session stream end to end over the package's fakes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import Role, mint_service_token, mint_user_token
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
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
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.ports import EdgeInfo, EdgeState, PeerUnavailable
from duet.services.matchmaker.rate_limit import RateLimiter
from duet.services.matchmaker.server import STATUS, Abort, MatchmakerServicer, abort_for, call_record, server_message
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.services.store.records import CallRow
from duet.v1 import common_pb2, matchmaker_pb2, matchmaker_pb2_grpc

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

EDGES = [
    EdgeInfo("fra-1", 1, "Frankfurt", "127.0.0.1:1", "127.0.0.1:11", "127.0.0.1", EdgeState.ACTIVE),
    EdgeInfo("vir-1", 2, "Virginia", "127.0.0.1:2", "127.0.0.1:12", "127.0.0.1", EdgeState.ACTIVE),
]


class FailingStore(InMemoryStore):
    """A store whose database went away: the session must end INTERNAL, not hang."""

    async def upsert_user(self, user_id: str, display_name: str) -> None:
        raise ConnectionResetError("database connection lost")


@dataclass
class Service:
    address: str
    mm: Matchmaker
    routing: FakeRouting
    edges: FakeEdges


@pytest.fixture
def mm_store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
async def service(mm_store: InMemoryStore) -> AsyncIterator[Service]:
    routing, edges = FakeRouting(EDGES), FakeEdges()
    mm = Matchmaker(mm_store, routing, edges)
    servicer = MatchmakerServicer(mm)
    server, address = await start_server(
        "127.0.0.1:0",
        lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, s),
        interceptors=[AuthInterceptor(AuthSecrets(USER_SECRET, SERVICE_SECRET, "test"))],
    )
    try:
        yield Service(address, mm, routing, edges)
    finally:
        await mm.stop()
        await server.stop(None)


USER_SECRET, SERVICE_SECRET = b"u" * 32, b"s" * 32


def as_user(user: str) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(mint_user_token(USER_SECRET, user))


AS_OPS = bearer_metadata(mint_service_token(SERVICE_SECRET, Role.OPS_READ, "test"))


def hello(user: str) -> matchmaker_pb2.ClientMessage:
    return matchmaker_pb2.ClientMessage(hello=matchmaker_pb2.Hello(user_id=user, display_name=user.title()))


OFFER = matchmaker_pb2.ClientMessage(offer=matchmaker_pb2.LegOffer(sdp="v=0 offer"))
FIND = matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner())


async def refusal(
    address: str, *messages: matchmaker_pb2.ClientMessage, token_user: str | None = None
) -> grpc.aio.AioRpcError:
    """Send ``messages`` on a new Session stream (with a token for ``token_user``, default the
    first Hello's user) and return the status it ends with."""
    hellos = [m.hello.user_id for m in messages if m.WhichOneof("msg") == "hello"]
    token_user = token_user or (hellos[0] if hellos else "ana")
    async with grpc.aio.insecure_channel(address) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user(token_user))
        for m in messages:
            await call.write(m)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        return info.value


async def next_of(call: grpc.aio.StreamStreamCall, kind: str) -> matchmaker_pb2.ServerMessage:
    while True:
        msg: matchmaker_pb2.ServerMessage = await asyncio.wait_for(call.read(), 5)
        assert msg is not grpc.aio.EOF, f"stream ended before {kind}"
        if msg.WhichOneof("msg") == kind:
            return msg


async def status_after_the_rest(call: grpc.aio.StreamStreamCall) -> grpc.StatusCode:
    # gRPC hands out a stream's status only once its messages have been read.
    while await asyncio.wait_for(call.read(), 5) is not grpc.aio.EOF:
        pass
    code: grpc.StatusCode = await call.code()
    return code


async def cleaned_up(mm: Matchmaker) -> bool:
    # The status reaches the client before the server has closed the session behind it.
    for _ in range(200):
        if not mm.sessions:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_call_over_grpc(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        ana, ben = stub.Session(metadata=as_user("ana")), stub.Session(metadata=as_user("ben"))
        for call, user in ((ana, "ana"), (ben, "ben")):
            for m in (hello(user), OFFER, FIND):
                await call.write(m)
        assigned = (await next_of(ana, "edge_assigned")).edge_assigned
        assert assigned.edge.edge_id == "fra-1" and assigned.edge.backbone_address == "127.0.0.1:11"
        assert assigned.edge.state == common_pb2.EDGE_STATE_ACTIVE
        matched = (await next_of(ben, "matched")).matched
        assert matched.partner_display_name == "Ana" and list(matched.route) == ["fra-1"]
        assert 0 < matched.stages.queued <= matched.stages.bridged

        # someone else's live call is not yours to report on
        err = await refusal(
            service.address,
            hello("cleo"),
            matchmaker_pb2.ClientMessage(connect_report=matchmaker_pb2.ConnectReport(call_id=matched.call_id)),
        )
        assert err.code() == Code.PERMISSION_DENIED and matched.call_id in err.details()

        report = matchmaker_pb2.ConnectReport(
            call_id=matched.call_id,
            connected=True,
            stages=common_pb2.StageTimes(first_frame=matched.stages.bridged + 90),
        )
        await ben.write(matchmaker_pb2.ClientMessage(connect_report=report))
        await ana.write(matchmaker_pb2.ClientMessage(leave=matchmaker_pb2.Leave()))
        assert (await next_of(ben, "call_ended")).call_ended.reason == "partner_left"
        assert await status_after_the_rest(ana) == Code.OK

        record = await stub.GetCall(matchmaker_pb2.GetCallRequest(call_id=matched.call_id), metadata=as_user("ben"))
        assert (record.state, record.end_reason) == ("ended", "left")
        ben_side = record.a if record.a.user_id == "ben" else record.b
        assert ben_side.stages.first_frame == matched.stages.bridged + 90 and ben_side.connect_ms >= 90
        await ben.done_writing()
        assert await status_after_the_rest(ben) == Code.OK


@pytest.mark.parametrize(
    ("setup", "messages", "code", "words"),
    [
        ("routing down", [hello("ana")], Code.UNAVAILABLE, "no edge could be assigned"),
        ("", [hello("ana"), hello("ana")], Code.INVALID_ARGUMENT, "already"),
        (
            "",
            [hello("ana"), matchmaker_pb2.ClientMessage(offer=matchmaker_pb2.LegOffer(sdp="nope"))],
            Code.INVALID_ARGUMENT,
            "rejected the offer",
        ),
        ("edge down", [hello("ana"), OFFER], Code.UNAVAILABLE, "rejected the offer"),
        ("", [hello("ana"), OFFER, OFFER], Code.FAILED_PRECONDITION, "one offer"),
        (
            "",
            [
                hello("ana"),
                matchmaker_pb2.ClientMessage(connect_report=matchmaker_pb2.ConnectReport(call_id="nope")),
            ],
            Code.NOT_FOUND,
            "nope",
        ),
    ],
    ids=["no-ingress", "hello-twice", "bad-offer", "edge-down", "second-offer", "unknown-call"],
)
async def test_refusals_end_the_stream_with_their_status(
    service: Service, setup: str, messages: list[matchmaker_pb2.ClientMessage], code: grpc.StatusCode, words: str
) -> None:
    service.routing.down = setup == "routing down"
    if setup == "edge down":
        service.edges.down.add("fra-1")
    err = await refusal(service.address, *messages)
    assert err.code() == code and words in err.details(), err.details()
    assert await cleaned_up(service.mm)


@pytest.mark.parametrize("mm_store", [FailingStore()])
async def test_an_unexpected_failure_ends_the_stream_internal(service: Service) -> None:
    err = await refusal(service.address, hello("ana"))
    assert err.code() == Code.INTERNAL and "database connection lost" in err.details()


async def test_get_call_statuses(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetCall(matchmaker_pb2.GetCallRequest(), metadata=AS_OPS)
        assert info.value.code() == Code.INVALID_ARGUMENT and "call_id" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetCall(matchmaker_pb2.GetCallRequest(call_id="nope"), metadata=AS_OPS)
        assert info.value.code() == Code.NOT_FOUND and "nope" in (info.value.details() or "")


# -- identity comes from the token -------------------------------------------------------


async def test_a_hello_for_another_user_than_the_token_is_refused(service: Service) -> None:
    err = await refusal(service.address, hello("ana"), token_user="mallory")
    assert err.code() == Code.UNAUTHENTICATED and err.details() == "token is for user mallory, not ana"
    assert await cleaned_up(service.mm)


async def test_a_hello_without_user_id_is_the_token_users_session(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user("ana"))
        await call.write(matchmaker_pb2.ClientMessage(hello=matchmaker_pb2.Hello(display_name="Ana")))
        await next_of(call, "edge_assigned")
        assert [s.user_id for s in service.mm.sessions.values()] == ["ana"]
        await call.write(matchmaker_pb2.ClientMessage(leave=matchmaker_pb2.Leave()))
        assert await status_after_the_rest(call) == Code.OK


async def test_a_user_reads_only_their_own_calls(service: Service, mm_store: InMemoryStore) -> None:
    row = CallRow(
        call_id="c-ana-ben",
        user_a="ana",
        user_b="ben",
        edge_a="fra-1",
        edge_b="fra-1",
        leg_a="l1",
        leg_b="l2",
        route=["fra-1"],
        route_rtt_ms=0.0,
        state="bridged",
        stages_a={},
        stages_b={},
    )
    for user in ("ana", "ben"):
        await mm_store.upsert_user(user, user.title())
    await mm_store.create_call(row)
    request = matchmaker_pb2.GetCallRequest(call_id="c-ana-ben")
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        for reader in (as_user("ana"), as_user("ben"), AS_OPS):
            assert (await stub.GetCall(request, metadata=reader)).call_id == "c-ana-ben"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetCall(request, metadata=as_user("cleo"))
        assert info.value.code() == Code.PERMISSION_DENIED
        assert info.value.details() == "call 'c-ana-ben' is not one of yours"
        edge = bearer_metadata(mint_service_token(SERVICE_SECRET, Role.EDGE, "fra-1"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetCall(request, metadata=edge)
        assert info.value.code() == Code.PERMISSION_DENIED and "role edge" in (info.value.details() or "")


# -- preferences, safety and ticket lifetime over gRPC ---------------------------------------------

Preferences = matchmaker_pb2.Preferences


def find(**prefs: object) -> matchmaker_pb2.ClientMessage:
    return matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner(preferences=Preferences(**prefs)))


def msg(**kind: object) -> matchmaker_pb2.ClientMessage:
    return matchmaker_pb2.ClientMessage(**kind)


async def opened(stub: matchmaker_pb2_grpc.MatchmakerStub, user: str) -> grpc.aio.StreamStreamCall:
    call = stub.Session(metadata=as_user(user))
    for m in (hello(user), OFFER):
        await call.write(m)
    await next_of(call, "answer")
    return call


async def test_matched_carries_the_partners_profile_and_a_predicted_connect(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        ana, ben = await opened(stub, "ana"), await opened(stub, "ben")
        await ana.write(find(languages=["en", "pt"], interests=["Music", "film"]))
        queued = (await next_of(ana, "queued")).queued
        assert queued.position == 1 and queued.expires == pytest.approx(queued.queued + 120_000)
        await ben.write(find(languages=["pt"], interests=["music", "chess"]))
        matched = (await next_of(ben, "matched")).matched
        assert matched.partner.display_name == "Ana" and matched.partner.region == "Frankfurt"
        assert list(matched.partner.shared_interests) == ["music"] and list(matched.partner.languages) == ["en", "pt"]
        assert matched.predicted_connect_ms == pytest.approx(matched.route_rtt_ms / 2 + 33.3)
        for call in (ana, ben):
            await call.write(msg(leave=matchmaker_pb2.Leave()))


@pytest.mark.parametrize(
    ("prefs", "words"),
    [
        ({"languages": ["english"]}, "find_partner.preferences.languages: 'english' is not a two-letter"),
        ({"languages": ["en"] * 9}, "at most 8"),
        ({"interests": ["x" * 33]}, "at most 32"),
        ({"interests": [f"i{n}" for n in range(11)]}, "at most 10"),
        ({"interests": [" "]}, "empty"),
        ({"gender": "robot"}, "gender: 'robot' is not one of female, male, nonbinary"),
        ({"want_age_bands": ["12-17"]}, "want_age_bands: '12-17'"),
        ({"scope": 7}, "scope: 7 is not a known scope"),
    ],
    ids=["language", "languages", "interest-length", "interests", "blank-interest", "gender", "age", "scope"],
)
async def test_invalid_preferences_are_refused_and_change_nothing(
    service: Service, mm_store: InMemoryStore, prefs: dict[str, object], words: str
) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        ana = await opened(matchmaker_pb2_grpc.MatchmakerStub(ch), "ana")
        await ana.write(find(**prefs))
        error = (await next_of(ana, "error")).error
        assert (error.code, error.request) == ("INVALID_ARGUMENT", "find_partner") and words in error.message
        assert len(service.mm.pool) == 0 and not await mm_store.open_tickets()
        # The session goes on: a valid request is served on the same stream and leg.
        await ana.write(find(languages=["en"]))
        assert (await next_of(ana, "queued")).queued.position == 1
        await ana.write(msg(leave=matchmaker_pb2.Leave()))
        assert await status_after_the_rest(ana) == Code.OK


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("x" * 41, "41 characters; at most 40"),
        ("ana\u202egnp.exe", "text-direction control character (U+202E) at position 4"),
        ("ana\x07", "control character (U+0007)"),
        ("   ", "empty"),
    ],
    ids=["too-long", "bidi-override", "control", "blank"],
)
async def test_bad_display_names_end_the_stream_invalid_argument(
    service: Service, mm_store: InMemoryStore, name: str, words: str
) -> None:
    err = await refusal(service.address, msg(hello=matchmaker_pb2.Hello(user_id="ana", display_name=name)))
    assert err.code() == Code.INVALID_ARGUMENT and words in (err.details() or ""), err.details()
    assert await mm_store.get_user("ana") is None and await cleaned_up(service.mm)


async def test_display_names_are_nfc_normalised_and_counted_in_characters(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        decomposed = "Jose\u0301" + "x" * 35  # 41 code points, 40 characters once composed
        ana = stub.Session(metadata=as_user("ana"))
        for m in (msg(hello=matchmaker_pb2.Hello(user_id="ana", display_name=decomposed)), OFFER, FIND):
            await ana.write(m)
        ben = await opened(stub, "ben")
        await ben.write(FIND)
        assert (await next_of(ben, "matched")).matched.partner_display_name == "Jos\u00e9" + "x" * 35
        for call in (ana, ben):
            await call.write(msg(leave=matchmaker_pb2.Leave()))


async def test_block_and_report_refusals_keep_the_session(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        ana, ben, cleo = await opened(stub, "ana"), await opened(stub, "ben"), await opened(stub, "cleo")
        await ana.write(FIND)
        await ben.write(FIND)
        call_id = (await next_of(ben, "matched")).matched.call_id
        cases = [
            (cleo, msg(block=matchmaker_pb2.Block(call_id="nope")), "NOT_FOUND", "you had no call 'nope'"),
            (cleo, msg(block=matchmaker_pb2.Block(call_id=call_id)), "NOT_FOUND", call_id),  # not cleo's call
            (cleo, msg(block=matchmaker_pb2.Block()), "INVALID_ARGUMENT", "call_id is required"),
            (cleo, msg(report=matchmaker_pb2.Report(call_id=call_id)), "NOT_FOUND", call_id),
            (
                ana,
                msg(report=matchmaker_pb2.Report(call_id=call_id, reason="r" * 501)),
                "INVALID_ARGUMENT",
                "at most 500 characters",
            ),
        ]
        safety = service.mm.safety
        for call, request, code, words in cases:
            await call.write(request)
            error = (await next_of(call, "error")).error
            assert error.code == code and words in error.message, error
        assert await safety.blocks_of("ana") == set() and await safety.report_count("ben") == 0
        assert service.mm.sessions and len(service.mm._calls) == 1  # the call goes on
        await ana.write(msg(heartbeat=matchmaker_pb2.Heartbeat()))
        ack = (await next_of(ana, "heartbeat_ack")).heartbeat_ack
        assert ack.server_time > 0 and not ack.ticket_id
        for call in (ana, ben, cleo):
            await call.write(msg(leave=matchmaker_pb2.Leave()))


async def test_block_ends_the_call_and_the_pair_never_meets_again(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        ana, ben = await opened(stub, "ana"), await opened(stub, "ben")
        await ana.write(FIND)
        await ben.write(FIND)
        call_id = (await next_of(ana, "matched")).matched.call_id
        await ana.write(msg(block=matchmaker_pb2.Block(call_id=call_id)))
        assert (await next_of(ana, "call_ended")).call_ended.reason == "blocked"
        assert (await next_of(ana, "blocked")).blocked.call_id == call_id
        assert (await next_of(ben, "call_ended")).call_ended.reason == "partner_left"
        assert await service.mm.safety.blocks_of("ben") == {"ana"}
        # Both look again: they wait side by side, and even a new session of ben's does not meet ana.
        await ana.write(FIND)
        await ben.write(msg(leave=matchmaker_pb2.Leave()))
        ben2 = await opened(stub, "ben")
        await ben2.write(FIND)
        await next_of(ben2, "queued")
        assert len(service.mm.pool) == 2
        cleo = await opened(stub, "cleo")
        await cleo.write(FIND)
        assert (await next_of(cleo, "matched")).matched.partner_display_name == "Ana"  # the oldest waiting
        for call in (ana, ben2, cleo):
            await call.write(msg(leave=matchmaker_pb2.Leave()))


async def test_cancel_leaves_the_pool_and_keeps_the_leg(service: Service, mm_store: InMemoryStore) -> None:
    async with grpc.aio.insecure_channel(service.address) as ch:
        ana = await opened(matchmaker_pb2_grpc.MatchmakerStub(ch), "ana")
        await ana.write(FIND)
        ticket = (await next_of(ana, "queued")).queued.ticket_id
        await ana.write(msg(heartbeat=matchmaker_pb2.Heartbeat()))
        ack = (await next_of(ana, "heartbeat_ack")).heartbeat_ack
        assert (ack.ticket_id, ack.position) == (ticket, 1)
        await ana.write(msg(cancel=matchmaker_pb2.Cancel()))
        closed = (await next_of(ana, "ticket_closed")).ticket_closed
        assert (closed.ticket_id, closed.reason) == (ticket, "cancelled")
        row = await mm_store.get_ticket(ticket)
        assert row is not None and row.outcome == "cancelled: by the client"
        assert len(service.mm.pool) == 0 and not service.edges.detached  # the warm leg stays
        await ana.write(FIND)  # and can queue again
        assert (await next_of(ana, "queued")).queued.ticket_id != ticket
        await ana.write(msg(leave=matchmaker_pb2.Leave()))


async def test_rate_limit_answers_resource_exhausted_with_when_to_retry(service: Service) -> None:
    service.mm.rate_limiter = RateLimiter(2, 60.0)
    async with grpc.aio.insecure_channel(service.address) as ch:
        ana = await opened(matchmaker_pb2_grpc.MatchmakerStub(ch), "ana")
        for _ in range(2):
            await ana.write(FIND)
            await next_of(ana, "queued")
            await ana.write(msg(cancel=matchmaker_pb2.Cancel()))
            await next_of(ana, "ticket_closed")
        await ana.write(msg(next=matchmaker_pb2.Next()))
        error = (await next_of(ana, "error")).error
        assert (error.code, error.request) == ("RESOURCE_EXHAUSTED", "next")
        assert re.fullmatch(r"slow down: 2 requests in 60 s; try again in \d+\.\d s", error.message), error.message
        assert len(service.mm.pool) == 0
        await ana.write(msg(leave=matchmaker_pb2.Leave()))
        assert await status_after_the_rest(ana) == Code.OK


async def test_a_ticket_expires_and_its_client_is_told(mm_store: InMemoryStore) -> None:
    mm = Matchmaker(mm_store, FakeRouting(EDGES), FakeEdges(), config=MatchConfig(ticket_ttl_s=0.2))
    mm.start()
    servicer = MatchmakerServicer(mm)
    server, address = await start_server(
        "127.0.0.1:0",
        lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, s),
        interceptors=[AuthInterceptor(AuthSecrets(USER_SECRET, SERVICE_SECRET, "test"))],
    )
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            ana = await opened(matchmaker_pb2_grpc.MatchmakerStub(ch), "ana")
            await ana.write(FIND)
            ticket = (await next_of(ana, "queued")).queued.ticket_id
            closed = (await next_of(ana, "ticket_closed")).ticket_closed
            assert closed.ticket_id == ticket and closed.reason.startswith("expired: no partner found within 0.2 s")
            row = await mm_store.get_ticket(ticket)
            assert row is not None and row.outcome == "expired" and len(mm.pool) == 0
            await ana.write(msg(leave=matchmaker_pb2.Leave()))
            assert await status_after_the_rest(ana) == Code.OK
    finally:
        await mm.stop()
        await server.stop(None)
