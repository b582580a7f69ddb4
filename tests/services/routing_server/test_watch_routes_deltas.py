"""WatchRoutes deltas over real gRPC: edges that take deltas hold the same tables as edges that take whole ones.

Real pieces: the routing servicer behind the auth interceptor on loopback,
one stream per edge asking for deltas and one per edge taking whole tables,
each applied by the edge's own route-stream code to an EdgeRelay.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from duet.edge.relay import EdgeRelay
from duet.routing.geo import GeoLocator
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology
from duet.services.auth.secrets import AuthSecrets
from duet.services.edge_server.route_watch import RouteStream
from duet.services.routing_server.server import RoutingServicer
from duet.services.routing_server.state import RoutingState
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.v1 import routing_pb2, routing_pb2_grpc
from tests.services.routing_server import credentials

SECRETS = AuthSecrets(user=None, service=b"w" * 32, source="test")
REGION = Region("Frankfurt", 50.11, 8.68)


def mesh(edges: int = 24, links: int = 70, seed: int = 3) -> Topology:
    rng = random.Random(seed)
    nodes = tuple(
        EdgeNode(
            f"e{i:02}",
            i + 1,
            REGION.name,
            backbone_address=f"127.0.0.1:{31000 + i}",
            control_address="h:1",
            media_host="127.0.0.1",
        )
        for i in range(edges)
    )
    pairs = {(i - 1, i) for i in range(1, edges)}  # a line keeps it connected
    while len(pairs) < links:
        a, b = sorted(rng.sample(range(edges), 2))
        pairs.add((a, b))
    return Topology(
        (REGION,),
        nodes,
        tuple(Link(nodes[a].edge_id, nodes[b].edge_id, float(rng.randint(5, 60))) for a, b in sorted(pairs)),
        1,
    )


@dataclass
class Watcher:
    relay: EdgeRelay
    messages: list[routing_pb2.RouteTable] = field(default_factory=list)


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - polls state the watch tasks update
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


@contextlib.asynccontextmanager
async def served(state: RoutingState) -> AsyncIterator[routing_pb2_grpc.RoutingStub]:
    servicer = RoutingServicer(state, GeoLocator(None), REGION.name)
    server, address = await start_server(
        "127.0.0.1:0",
        lambda s: routing_pb2_grpc.add_RoutingServicer_to_server(servicer, s),
        interceptors=[AuthInterceptor(SECRETS)],
    )
    try:
        async with credentials.channel(address, SECRETS) as channel:
            yield routing_pb2_grpc.RoutingStub(channel)
    finally:
        await server.stop(grace=0.5)


async def follow(stub: routing_pb2_grpc.RoutingStub, edge_id: str, deltas: bool, watcher: Watcher) -> None:
    stream = RouteStream(watcher.relay)
    async for table in stub.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id=edge_id, deltas=deltas)):
        watcher.messages.append(table)
        stream.apply(table)


def held(relay: EdgeRelay) -> dict[str, tuple[int, str, tuple[str, int], float]]:
    return {
        d: (e.dest_number, e.next_hop_edge_id, e.next_hop_address, e.path_rtt_ms)
        for d, e in relay.backbone.routes.by_id.items()
    }


def expected(state: RoutingState, edge_id: str) -> dict[str, tuple[int, str, tuple[str, int], float]]:
    out = {}
    for d, e in state.routes.next_hops(edge_id).items():
        host, _, port = e.next_hop_backbone_address.rpartition(":")
        out[d] = (e.dest_number, e.next_hop_edge_id, (host, int(port)), e.path_rtt_ms)
    return out


async def test_delta_streams_hold_exactly_the_whole_tables_through_every_kind_of_change() -> None:
    t = mesh()
    state = RoutingState(t)
    edge_ids = [e.edge_id for e in t.edges]
    by_delta = {e: Watcher(EdgeRelay(e, 0, b"k")) for e in edge_ids}
    by_whole = {e: Watcher(EdgeRelay(e, 0, b"k")) for e in edge_ids}
    async with served(state) as stub:
        tasks = [asyncio.create_task(follow(stub, e, True, by_delta[e])) for e in edge_ids]
        tasks += [asyncio.create_task(follow(stub, e, False, by_whole[e])) for e in edge_ids]
        try:

            async def settled() -> None:
                await wait_until(
                    lambda: all(
                        by_delta[e].messages
                        and by_whole[e].messages
                        and held(by_delta[e].relay) == held(by_whole[e].relay) == expected(state, e)
                        for e in edge_ids
                    )
                )

            await settled()
            assert all(len(held(by_delta[e].relay)) == len(edge_ids) - 1 for e in edge_ids)
            failed = t.links[0]
            steps: list[Callable[[Topology], Topology]] = [
                lambda t: t.with_link(failed.a, failed.b, up=False),
                lambda t: t.with_link(t.links[5].a, t.links[5].b, rtt_ms=t.links[5].rtt_ms * 3),
                lambda t: t.with_edge_state("e05", EdgeState.DRAINING),
                lambda t: t.with_edge_state("e07", EdgeState.DOWN),  # leaves the graph: others drop it
                lambda t: t.with_edge_addresses(
                    "e09", control_address="h:1", backbone_address="127.0.0.1:39999", media_host="127.0.0.1"
                ),
                lambda t: t.with_edge_state("e07", EdgeState.ACTIVE).with_link(failed.a, failed.b, up=True),
            ]
            for step in steps:
                t = step(t).with_version(t.version + 1)
                await state.replace(t)
                await settled()
            await state.set_live(silent={"e11"}, link_weights={})  # a silent edge: live state, not a version
            await settled()
            assert "e11" not in held(by_delta["e00"].relay)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for e in edge_ids:
        first, *later = by_delta[e].messages
        assert not first.delta and all(m.delta for m in later)
        assert not any(m.delta for m in by_whole[e].messages)
    sent_delta = sum(len(m.entries) for w in by_delta.values() for m in w.messages[1:])
    sent_whole = sum(len(m.entries) for w in by_whole.values() for m in w.messages[1:])
    assert sent_delta < sent_whole / 2  # most entries survive most changes


async def test_a_new_stream_starts_with_the_whole_table() -> None:
    t = mesh(8, 12)
    state = RoutingState(t)
    async with served(state) as stub:
        for _ in range(2):  # a reconnect: same edge, new stream
            call = stub.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id="e03", deltas=True))
            first = await call.read()
            assert isinstance(first, routing_pb2.RouteTable)
            assert not first.delta and first.table_size == len(first.entries) == 7
            await state.replace(t.with_link(t.links[0].a, t.links[0].b, rtt_ms=99.0).with_version(t.version + 1))
            second = await call.read()
            assert isinstance(second, routing_pb2.RouteTable)
            assert second.delta and second.table_size == 7 and 0 < len(second.entries) < 7
            call.cancel()
            t = state.topology.with_version(state.topology.version + 1)
            await state.replace(t.with_link(t.links[0].a, t.links[0].b, rtt_ms=10.0))
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await call.read()
