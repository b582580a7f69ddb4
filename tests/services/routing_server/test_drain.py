"""Draining a transit edge moves a live stream to another path without losing a packet.

Real pieces: the routing service with PostgreSQL, backbone UDP endpoints fed by
their edges' WatchRoutes streams (as edge processes are), and the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from duet.edge.backbone import Backbone
from duet.edge.backbone_wire import BackboneHeader, PacketType, StreamKind
from duet.routing.topology import EdgeNode, Link, Region, Topology
from duet.routing.topology_file import dump_topology, parse_topology
from duet.services.auth.secrets import AuthSecrets
from duet.services.devkit.scratch_database import scratch_database
from duet.services.edge_server.route_watch import route_entries
from duet.services.routing_server.server import serve_routing
from duet.v1 import admin_pb2, admin_pb2_grpc, common_pb2, routing_pb2, routing_pb2_grpc
from tests.services.routing_server import credentials
from tests.services.routing_server.test_admin import free_port

SECRETS = AuthSecrets(user=None, service=b"d" * 32, source="test")

pytestmark = pytest.mark.slow

KEY = b"k" * 32
FRA, VIR, SIN = Region("Frankfurt", 50.11, 8.68), Region("Virginia", 37.37, -79.82), Region("Singapore", 1.28, 103.83)
# fra-1 reaches sin-1 through vir-1 (20 ms) or, slower, through fra-2 (40 ms).
TOPOLOGY = Topology(
    (FRA, VIR, SIN),
    (EdgeNode("fra-1", 1, "Frankfurt"), EdgeNode("vir-1", 2, "Virginia"), EdgeNode("sin-1", 3, "Singapore"),
     EdgeNode("fra-2", 4, "Frankfurt")),
    (Link("fra-1", "vir-1", 10), Link("vir-1", "sin-1", 10), Link("fra-1", "fra-2", 20), Link("fra-2", "sin-1", 20)),
)  # fmt: skip


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - polls state other tasks update; nothing to wait on
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def follow_routes(stub: routing_pb2_grpc.RoutingStub, edge_id: str, backbone: Backbone) -> None:
    async for table in stub.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id=edge_id)):
        backbone.routes.replace(table.version, route_entries(table))


@pytest.fixture
async def routing_address(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as dsn:
        stop = asyncio.Event()
        address = f"127.0.0.1:{free_port()}"
        task = asyncio.create_task(serve_routing(TOPOLOGY, secrets=SECRETS, bind=address, database=dsn, stop=stop))
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                await asyncio.wait_for(channel.channel_ready(), 20)
            yield address
        finally:
            stop.set()
            await task


async def test_draining_the_transit_edge_reroutes_a_live_stream_without_loss(routing_address: str) -> None:
    received: list[int] = []
    backbones: dict[str, Backbone] = {}
    for edge in TOPOLOGY.edges:
        on_deliver = (lambda h, p: received.append(int.from_bytes(p[:4], "big"))) if edge.edge_id == "sin-1" else None
        backbones[edge.edge_id] = Backbone(edge.number, KEY, on_deliver or (lambda h, p: None))
    watchers: list[asyncio.Task[None]] = []
    async with credentials.channel(routing_address, SECRETS) as channel:
        routing = routing_pb2_grpc.RoutingStub(channel)
        try:
            for edge_id, bb in backbones.items():
                host, port = await bb.start("127.0.0.1")
                await routing.RegisterEdge(
                    routing_pb2.RegisterEdgeRequest(
                        edge_id=edge_id,
                        control_address="127.0.0.1:1",
                        backbone_address=f"{host}:{port}",
                        media_host="127.0.0.1",
                    )
                )
            watchers = [asyncio.create_task(follow_routes(routing, e, bb)) for e, bb in backbones.items()]
            fra, vir, alt = backbones["fra-1"], backbones["vir-1"], backbones["fra-2"]
            # Every edge has its table, with every other edge in it.
            await wait_until(lambda: all(len(bb.routes.by_id) == 3 for bb in backbones.values()), 10)
            assert fra.routes.by_id["sin-1"].next_hop_edge_id == "vir-1"

            sent = 0
            header = BackboneHeader(
                ptype=PacketType.MEDIA, dest_edge=3, src_edge=0, bridge_id=1, side=0, kind=StreamKind.VIDEO, ttl=0
            )

            async def stream(packets: int) -> None:
                nonlocal sent
                for seq in itertools.islice(itertools.count(sent), packets):
                    assert fra.send(header, seq.to_bytes(4, "big") + b"\x00" * 100), f"no route for packet {seq}"
                    sent = seq + 1
                    await asyncio.sleep(0.005)

            await stream(60)
            assert vir.counters.packets_relayed > 0 and alt.counters.packets_relayed == 0

            admin = admin_pb2_grpc.TopologyAdminStub(channel)
            drained = asyncio.ensure_future(
                admin.SetEdgeState(admin_pb2.SetEdgeStateRequest(edge_id="vir-1", state=common_pb2.EDGE_STATE_DRAINING))
            )
            await stream(100)  # the call goes on while the change lands
            assert (await drained).applied
            relayed_by_vir = vir.counters.packets_relayed
            await stream(60)
            assert fra.routes.by_id["sin-1"].next_hop_edge_id == "fra-2"
            assert vir.counters.packets_relayed == relayed_by_vir  # no longer transit
            assert alt.counters.packets_relayed > 0  # the other path carries it now

            with contextlib.suppress(TimeoutError):
                await wait_until(lambda: len(received) >= sent, 2)
            assert sorted(received) == list(range(sent))  # not one packet lost across the switch
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await task
            for bb in backbones.values():
                bb.close()


def test_the_fixture_topology_is_a_valid_file() -> None:
    # The topology above is one an operator could write: it round-trips through the file format.
    assert parse_topology(dump_topology(TOPOLOGY)) == TOPOLOGY
