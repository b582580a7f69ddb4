"""The matchmaker's gRPC service over the package's fakes, and helpers to drive its Session stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import pytest

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role, mint_service_token, mint_user_token
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.ports import EdgeInfo, EdgeState
from duet.services.rpc.call_status import final_status, is_placeholder
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

Code = grpc.StatusCode
USER_SECRET, SERVICE_SECRET = b"u" * 32, b"s" * 32
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
    metadata = as_user(token_user or (hellos[0] if hellos else "ana"))
    async with grpc.aio.insecure_channel(address) as ch:
        return await refused_stream(matchmaker_pb2_grpc.MatchmakerStub(ch), metadata, messages)


PLACEHOLDER_TRIES = 3


async def refused_stream(
    stub: matchmaker_pb2_grpc.MatchmakerStub,
    metadata: tuple[tuple[str, str], ...],
    messages: Sequence[matchmaker_pb2.ClientMessage],
) -> grpc.aio.AioRpcError:
    """The status a Session stream sending ``messages`` ends with, as the server sent it.

    A write in flight when the server ends the stream fails with gRPC's placeholder status, which
    the server's status replaces a moment later, or not at all when the failed write is handled
    last (grpc/grpc#36066). So the status is waited for (services/rpc/call_status.py, as the SDK and
    gateway do), and the exchange, which changes nothing on the server, is repeated while only the
    placeholder is left (as the gateway does before a session is open)."""
    for _ in range(PLACEHOLDER_TRIES):
        call = stub.Session(metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            for m in messages:
                await call.write(m)  # raises once the server has ended the stream
            async for _ in call:
                pass
        exc = info.value
        code, details = await final_status(call, exc.code(), exc.details() or "")
        if not is_placeholder(code, details):
            break
    if (code, details) == (exc.code(), exc.details()):
        return exc
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


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
