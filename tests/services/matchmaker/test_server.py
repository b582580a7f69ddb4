"""The matchmaker's Session stream end to end over the package's fakes: a call, refusals and their
statuses, identity, call records."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role, mint_service_token
from duet.services.matchmaker.fakes import InMemoryStore
from duet.services.store.records import CallRow
from duet.v1 import common_pb2, matchmaker_pb2, matchmaker_pb2_grpc
from tests.services.matchmaker.grpc_harness import (
    AS_OPS,
    FIND,
    OFFER,
    SERVICE_SECRET,
    FailingStore,
    Service,
    as_user,
    cleaned_up,
    hello,
    next_of,
    opened,
    refusal,
    status_after_the_rest,
)

Code = grpc.StatusCode


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


async def test_a_stream_half_closed_then_cancelled_still_closes_its_session(service: Service) -> None:
    # The client's cancel can land while the server is closing after the half-close (a forwarding
    # replica stopping does this); the session must be closed all the same, never left in the pool.
    async with grpc.aio.insecure_channel(service.address) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        for i in range(12):
            call = await opened(stub, f"u{i}")
            await call.write(FIND)
            await next_of(call, "queued")
            await call.done_writing()
            for _ in range(i % 4):
                await asyncio.sleep(0)
            call.cancel()
    assert await cleaned_up(service.mm)
    assert len(service.mm.pool) == 0
