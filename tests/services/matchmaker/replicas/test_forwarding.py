"""Forwarding over real gRPC: a replica that does not own a client's shard passes its stream to the owner,
and the owner trusts the forwarded client address only beside a valid matchmaker service token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import Role, mint_service_token, mint_user_token
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.replicas.fake_ownership import InMemoryShardOwnership, ShardRegistry
from duet.services.matchmaker.replicas.forwarded_for import CLIENT_IP_KEY, REPLICA_TOKEN_KEY
from duet.services.matchmaker.replicas.forwarder import SessionForwarder
from duet.services.matchmaker.server import MatchmakerServicer, Replicas
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc
from tests.services.matchmaker.grpc_harness import EDGES, OFFER, SERVICE_SECRET, USER_SECRET, as_user, hello, next_of

REPLICA_TOKEN = mint_service_token(SERVICE_SECRET, Role.MATCHMAKER)


@dataclass
class Replica:
    address: str
    mm: Matchmaker
    ownership: InMemoryShardOwnership
    server: grpc.aio.Server
    forwarder: SessionForwarder
    servicer: MatchmakerServicer


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Replica, Replica]]:
    """Two replicas on one store and one ownership registry; the first owns the world shard."""
    store, registry = InMemoryStore(), ShardRegistry()
    made: list[Replica] = []
    try:
        for name in ("a", "b"):
            mm = Matchmaker(store, FakeRouting(EDGES, ingress_by_prefix={"2.": "vir-1"}), FakeEdges())
            servicer = MatchmakerServicer(mm, trust_forwarded_for=True, service_secret=SERVICE_SECRET)
            server, address = await start_server(
                "127.0.0.1:0",
                lambda s, servicer=servicer: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, s),  # type: ignore[misc]
                interceptors=[AuthInterceptor(AuthSecrets(USER_SECRET, SERVICE_SECRET, "test"))],
            )
            ownership = InMemoryShardOwnership(registry, name, address, ("world",))
            forwarder = SessionForwarder(REPLICA_TOKEN)
            servicer.replicas = Replicas(ownership, forwarder)
            made.append(Replica(address, mm, ownership, server, forwarder, servicer))
        await made[0].ownership.poll()
        await made[1].ownership.poll()
        await made[0].mm.restore_shard("world")  # what the ownership loop does on taking a shard
        assert made[0].ownership.owns("world") and not made[1].ownership.owns("world")
        yield made[0], made[1]
    finally:
        for r in made:
            await r.mm.stop()
            await r.server.stop(None)
            await r.forwarder.close()


async def test_a_stream_to_a_non_owner_is_served_by_the_owner(pair: tuple[Replica, Replica]) -> None:
    owner, other = pair
    async with grpc.aio.insecure_channel(other.address) as ch:
        # The client's own x-forwarded-for, trusted by the replica it reached, travels on to the owner.
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(
            metadata=(*as_user("ana"), ("x-forwarded-for", "2.9.9.9"))
        )
        await call.write(hello("ana"))
        assigned = await next_of(call, "edge_assigned")
        assert assigned.edge_assigned.edge.edge_id == "vir-1"  # placed by the forwarded address
        await call.write(OFFER)
        await next_of(call, "answer")
        await call.write(matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner()))
        queued = await next_of(call, "queued")
        assert not other.mm.sessions
        [session] = owner.mm.sessions.values()
        assert session.user_id == "ana" and session.client_ip == "2.9.9.9"
        assert owner.mm.pool.get(queued.queued.ticket_id) is not None
        await call.write(matchmaker_pb2.ClientMessage(leave=matchmaker_pb2.Leave()))
        await call.done_writing()
        assert await asyncio.wait_for(call.code(), 5) == grpc.StatusCode.OK
    for _ in range(100):
        if not owner.mm.sessions:
            break
        await asyncio.sleep(0.02)
    assert not owner.mm.sessions  # the Leave reached the owner


async def test_a_forwarded_stream_ends_unavailable_when_the_owner_goes_away(pair: tuple[Replica, Replica]) -> None:
    owner, other = pair
    async with grpc.aio.insecure_channel(other.address) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user("ana"))
        await call.write(hello("ana"))
        await next_of(call, "edge_assigned")
        await owner.server.stop(None)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await next_of(call, "never")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "went away" in (info.value.details() or "") and "reconnect" in (info.value.details() or "")


async def test_no_owner_yet_is_unavailable_in_words(pair: tuple[Replica, Replica]) -> None:
    owner, other = pair
    owner.ownership.kill()
    async with grpc.aio.insecure_channel(other.address) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user("ana"))
        # The replica answers before reading anything (one shard: no Hello needed to know it), so the
        # status may already be there when the Hello is written.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.write(hello("ana"))
            await next_of(call, "edge_assigned")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "being taken over" in (info.value.details() or "")


@pytest.mark.parametrize(
    ("replica_token", "trusted"),
    [
        (REPLICA_TOKEN, True),
        ("", False),
        ("not-a-token", False),
        (mint_service_token(SERVICE_SECRET, Role.EDGE, "fra-1"), False),  # a service, but not a matchmaker
        (mint_service_token(b"x" * 32, Role.MATCHMAKER), False),  # signed with another secret
        (mint_user_token(USER_SECRET, "ana"), False),  # a user cannot vouch for an address
    ],
)
async def test_a_forwarded_address_is_trusted_only_with_a_matchmaker_token(
    pair: tuple[Replica, Replica], replica_token: str, trusted: bool
) -> None:
    owner, _ = pair
    # The owner trusts no x-forwarded-for itself here: only the replica header could move the client.
    owner_servicer_trust = MatchmakerServicer(owner.mm, service_secret=SERVICE_SECRET)
    server, address = await start_server(
        "127.0.0.1:0",
        lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(owner_servicer_trust, s),
        interceptors=[AuthInterceptor(AuthSecrets(USER_SECRET, SERVICE_SECRET, "test"))],
    )
    try:
        metadata = (*as_user("ana"), (CLIENT_IP_KEY, "2.2.2.2"))
        if replica_token:
            metadata += ((REPLICA_TOKEN_KEY, replica_token),)
        async with grpc.aio.insecure_channel(address) as ch:
            call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=metadata)
            await call.write(hello("ana"))
            assigned = await next_of(call, "edge_assigned")
            [session] = owner.mm.sessions.values()
            assert session.client_ip == ("2.2.2.2" if trusted else "127.0.0.1")
            assert assigned.edge_assigned.edge.edge_id == ("vir-1" if trusted else "fra-1")
            call.cancel()
    finally:
        await server.stop(None)


async def test_a_user_whose_forwarding_replica_died_resumes_the_ticket(pair: tuple[Replica, Replica]) -> None:
    owner, other = pair
    find = matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner())
    async with grpc.aio.insecure_channel(other.address) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user("ana"))
        await call.write(hello("ana"))
        await call.write(OFFER)
        await next_of(call, "answer")
        await call.write(find)
        first = (await next_of(call, "queued")).queued
        # The replica holding the client's stream dies (its sockets close with it); the owner lives.
        await other.server.stop(None)
        await other.forwarder.close()
        with pytest.raises(grpc.aio.AioRpcError):
            await next_of(call, "never")
    for _ in range(100):
        if not owner.mm.sessions:
            break
        await asyncio.sleep(0.02)
    assert not owner.mm.sessions and owner.mm.pool.get(first.ticket_id) is None  # not matchable meanwhile
    async with grpc.aio.insecure_channel(owner.address) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user("ana"))
        await call.write(hello("ana"))
        await call.write(OFFER)
        await next_of(call, "answer")
        await call.write(find)
        again = (await next_of(call, "queued")).queued
        assert (again.ticket_id, again.queued) == (first.ticket_id, first.queued)
        call.cancel()


async def test_a_forwarded_user_who_leaves_gives_the_ticket_up(pair: tuple[Replica, Replica]) -> None:
    owner, other = pair
    async with grpc.aio.insecure_channel(other.address) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=as_user("ana"))
        await call.write(hello("ana"))
        await call.write(OFFER)
        await next_of(call, "answer")
        await call.write(matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner()))
        ticket_id = (await next_of(call, "queued")).queued.ticket_id
        await call.write(matchmaker_pb2.ClientMessage(leave=matchmaker_pb2.Leave()))
        await call.done_writing()
        assert await asyncio.wait_for(call.code(), 5) == grpc.StatusCode.OK
    row = await owner.mm.store.get_ticket(ticket_id)  # type: ignore[attr-defined]
    for _ in range(100):
        row = await owner.mm.store.get_ticket(ticket_id)  # type: ignore[attr-defined]
        if row is not None and row.closed_at is not None:
            break
        await asyncio.sleep(0.02)
    assert row is not None and row.outcome == "cancelled: leave"
    assert owner.mm.waiting_by_shard() == {"world": 0}
