"""A clean stop of one replica over real gRPC (``MatchmakerServicer.stop_serving``, the first step of
``serve_matchmaker``'s shutdown): every client is told UNAVAILABLE to reconnect with their place kept,
whether its stream was served here or forwarded to the owner, and the waits are resumed elsewhere."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc
from tests.services.matchmaker.grpc_harness import OFFER, as_user, hello, next_of
from tests.services.matchmaker.replicas.test_forwarding import Replica, pair

__all__ = ["pair"]  # the fixture

FIND = matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner())


async def wait_on(address: str, user: str, ch: grpc.aio.Channel) -> tuple[grpc.aio.StreamStreamCall, str, float]:
    call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user(user))
    await call.write(hello(user))
    await call.write(OFFER)
    await next_of(call, "answer")
    await call.write(FIND)
    queued = (await next_of(call, "queued")).queued
    return call, queued.ticket_id, queued.queued


async def ended_with(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        while True:
            await next_of(call, "never")
    return info.value


@pytest.mark.parametrize("reached", ["owner", "other"])
async def test_a_stopping_replica_tells_its_clients_to_reconnect_and_their_place_is_kept(
    pair: tuple[Replica, Replica], reached: str
) -> None:
    """``reached``: the replica the client dialled, which is the one that stops (the owner, or the one
    that forwarded the stream to the owner)."""
    owner, other = pair
    stopping, staying = (owner, other) if reached == "owner" else (other, owner)
    async with grpc.aio.insecure_channel(stopping.address) as ch:
        call, ticket_id, queued_at = await wait_on(stopping.address, "ana", ch)
        await stopping.servicer.stop_serving()
        error = await asyncio.wait_for(ended_with(call), 5)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert (
            error.details() == "this matchmaker replica is shutting down; reconnect (your place in the queue is kept)"
        )
        # A new stream is refused the same way while it finishes stopping.
        late = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user("ben"))
        await late.write(hello("ben"))
        refused = await asyncio.wait_for(ended_with(late), 5)
        assert refused.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in (refused.details() or "")
    row = await owner.mm.store.get_ticket(ticket_id)  # type: ignore[attr-defined]
    assert row is not None and row.closed_at is None
    if reached == "owner":
        # What serve_matchmaker and the survivor's ownership loop do next: the locks go, it takes the shard.
        await owner.ownership.close()
        await staying.ownership.poll()
        assert staying.ownership.owns("world")
        await staying.mm.restore_shard("world")
    else:
        for _ in range(100):  # the owner notices the forwarded stream is gone
            if not owner.mm.sessions:
                break
            await asyncio.sleep(0.02)
    async with grpc.aio.insecure_channel(staying.address) as ch:
        again, again_id, again_at = await wait_on(staying.address, "ana", ch)
        assert again_id == ticket_id and again_at == pytest.approx(queued_at, abs=0.01)
        again.cancel()
