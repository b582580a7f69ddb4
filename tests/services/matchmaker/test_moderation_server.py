"""The Moderation RPCs over real gRPC with the auth interceptor, on the package's fakes: a held user
is listed, cleared by an ops-admin, and may look for partners again at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import Role, mint_service_token
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemorySafetyStore, InMemoryStore
from duet.services.matchmaker.moderation_server import ModerationServicer
from duet.services.matchmaker.server import MatchmakerServicer
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc, moderation_pb2, moderation_pb2_grpc
from tests.services.matchmaker.grpc_harness import (
    EDGES,
    FIND,
    SERVICE_SECRET,
    USER_SECRET,
    as_user,
    msg,
    next_of,
    opened,
    status_after_the_rest,
)

Code = grpc.StatusCode
USERS = ("ana", "ben", "cleo", "dara")
AS_READ = bearer_metadata(mint_service_token(SERVICE_SECRET, Role.OPS_READ, "vik"))
AS_ADMIN = bearer_metadata(mint_service_token(SERVICE_SECRET, Role.OPS_ADMIN, "mo"))


@dataclass
class Served:
    address: str
    mm: Matchmaker
    safety: InMemorySafetyStore


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    safety = InMemorySafetyStore(user_exists=lambda user: user in USERS)
    mm = Matchmaker(InMemoryStore(), FakeRouting(EDGES), FakeEdges(), safety=safety, config=MatchConfig())
    session, moderation = MatchmakerServicer(mm), ModerationServicer(safety, mm)

    def add(server: grpc.aio.Server) -> None:
        matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(session, server)
        moderation_pb2_grpc.add_ModerationServicer_to_server(moderation, server)

    server, address = await start_server(
        "127.0.0.1:0", add, interceptors=[AuthInterceptor(AuthSecrets(USER_SECRET, SERVICE_SECRET, "test"))]
    )
    try:
        yield Served(address, mm, safety)
    finally:
        await mm.stop()
        await server.stop(None)


async def reported_by_three(safety: InMemorySafetyStore, user: str) -> None:
    for n, reporter in enumerate(u for u in USERS if u != user):
        await safety.add_report(reporter, user, f"c{n}", f"{reporter}: rude")


async def test_a_held_user_is_listed_cleared_by_an_admin_and_matched_again(served: Served) -> None:
    await reported_by_three(served.safety, "dara")
    async with grpc.aio.insecure_channel(served.address) as ch:
        mod = moderation_pb2_grpc.ModerationStub(ch)
        dara = await opened(matchmaker_pb2_grpc.MatchmakerStub(ch), "dara")
        await dara.write(FIND)
        error = (await next_of(dara, "error")).error
        assert error.code == "PERMISSION_DENIED" and "until a moderator has reviewed" in error.message

        held = await mod.ListHeld(moderation_pb2.ListHeldRequest(), metadata=AS_READ)
        assert held.review_threshold == 3
        assert [(u.user_id, u.reporters) for u in held.users] == [("dara", 3)]
        reports = await mod.ListReports(moderation_pb2.ListReportsRequest(user_id="dara"), metadata=AS_READ)
        assert reports.held and len(reports.reports) == 3 and all(r.counts for r in reports.reports)
        assert {r.reason for r in reports.reports} == {"ana: rude", "ben: rude", "cleo: rude"}

        # Looking is not clearing: ops-read may not clear, and nothing changed.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await mod.ClearHold(moderation_pb2.ClearHoldRequest(user_id="dara"), metadata=AS_READ)
        assert info.value.code() == Code.PERMISSION_DENIED
        assert len((await mod.ListHeld(moderation_pb2.ListHeldRequest(), metadata=AS_READ)).users) == 1

        cleared = await mod.ClearHold(
            moderation_pb2.ClearHoldRequest(user_id="dara", note="heated, not abusive"), metadata=AS_ADMIN
        )
        assert (cleared.review.reviewer, cleared.review.reports_cleared) == ("ops-admin:mo", 3)
        assert (await mod.ListHeld(moderation_pb2.ListHeldRequest(), metadata=AS_READ)).users == []

        # The same session, at once: the hold is gone.
        await dara.write(FIND)
        assert (await next_of(dara, "queued")).queued.ticket_id
        after = await mod.ListReports(moderation_pb2.ListReportsRequest(user_id="dara"), metadata=AS_READ)
        assert not after.held and not any(r.counts for r in after.reports)
        assert [r.note for r in after.reviews] == ["heated, not abusive"]
        await dara.write(msg(leave=matchmaker_pb2.Leave()))
        assert await status_after_the_rest(dara) == Code.OK


@pytest.mark.parametrize(
    ("rpc", "message", "code", "words"),
    [
        ("ListHeld", moderation_pb2.ListHeldRequest(limit=1001), Code.INVALID_ARGUMENT, "limit must be"),
        ("ListReports", moderation_pb2.ListReportsRequest(), Code.INVALID_ARGUMENT, "user_id is required"),
        ("ListReports", moderation_pb2.ListReportsRequest(user_id="a b"), Code.INVALID_ARGUMENT, "1-64 characters"),
        ("ListReports", moderation_pb2.ListReportsRequest(user_id="nobody"), Code.NOT_FOUND, "no user 'nobody'"),
        ("ClearHold", moderation_pb2.ClearHoldRequest(user_id="nobody"), Code.NOT_FOUND, "no user 'nobody'"),
        ("ClearHold", moderation_pb2.ClearHoldRequest(user_id="ana"), Code.FAILED_PRECONDITION, "nothing to clear"),
        (
            "ClearHold",
            moderation_pb2.ClearHoldRequest(user_id="dara", note="x" * 501),
            Code.INVALID_ARGUMENT,
            "at most 500",
        ),
        (
            "ClearHold",
            moderation_pb2.ClearHoldRequest(user_id="dara", note="ok\x07"),
            Code.INVALID_ARGUMENT,
            "control characters",
        ),
    ],
)
async def test_bad_requests_get_their_status_and_change_nothing(
    served: Served, rpc: str, message: object, code: grpc.StatusCode, words: str
) -> None:
    await reported_by_three(served.safety, "dara")
    async with grpc.aio.insecure_channel(served.address) as ch:
        stub = moderation_pb2_grpc.ModerationStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(stub, rpc)(message, metadata=AS_ADMIN)
    assert info.value.code() == code and words in (info.value.details() or ""), info.value
    assert served.safety.reviews == [] and await served.safety.report_count("dara") == 3


@pytest.mark.parametrize(
    ("metadata", "code"),
    [((), Code.UNAUTHENTICATED), (as_user("ana"), Code.PERMISSION_DENIED)],
    ids=["no token", "a user's token"],
)
async def test_strangers_and_users_get_nothing(
    served: Served, metadata: tuple[tuple[str, str], ...], code: Code
) -> None:
    await reported_by_three(served.safety, "dara")
    async with grpc.aio.insecure_channel(served.address) as ch:
        stub = moderation_pb2_grpc.ModerationStub(ch)
        for call in (
            stub.ListHeld(moderation_pb2.ListHeldRequest(), metadata=metadata),
            stub.ListReports(moderation_pb2.ListReportsRequest(user_id="dara"), metadata=metadata),
            stub.ClearHold(moderation_pb2.ClearHoldRequest(user_id="dara"), metadata=metadata),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == code
    assert served.safety.reviews == []
