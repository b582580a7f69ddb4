"""The matchmaker's Session stream over the fakes: preferences, display names, safety, cancel,
the rate limit and ticket expiry, with their statuses."""

from __future__ import annotations

import re

import grpc
import pytest

from duet.services.auth.secrets import AuthSecrets
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.rate_limit import RateLimiter
from duet.services.matchmaker.server import MatchmakerServicer
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc
from tests.services.matchmaker.grpc_harness import (
    EDGES,
    FIND,
    OFFER,
    SERVICE_SECRET,
    USER_SECRET,
    Service,
    as_user,
    cleaned_up,
    find,
    msg,
    next_of,
    opened,
    refusal,
    status_after_the_rest,
)

Code = grpc.StatusCode


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
