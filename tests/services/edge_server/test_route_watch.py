"""The edge's route stream: the whole table first, then deltas; a delta it cannot place is never applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from duet.edge.relay import EdgeRelay
from duet.services.edge_server.route_watch import RouteStream, RouteStreamBroken
from duet.services.edge_server.server import _stay_registered
from duet.services.rpc.server import start_server
from duet.v1 import routing_pb2, routing_pb2_grpc


def hop(dest: str, number: int, via: str, port: int, rtt: float) -> routing_pb2.NextHop:
    return routing_pb2.NextHop(
        dest_edge_id=dest,
        dest_number=number,
        next_hop_edge_id=via,
        next_hop_backbone_address=f"127.0.0.1:{port}" if port else "",
        path_rtt_ms=rtt,
    )


WHOLE = routing_pb2.RouteTable(
    edge_id="fra-1",
    version=3,
    entries=[hop("vir-1", 2, "vir-1", 2002, 80), hop("sin-1", 3, "vir-1", 2002, 230)],
    table_size=2,
)


def held(relay: EdgeRelay) -> dict[str, tuple[str, float]]:
    return {d: (e.next_hop_edge_id, e.path_rtt_ms) for d, e in relay.backbone.routes.by_id.items()}


def test_a_delta_before_the_whole_table_is_refused_and_not_applied() -> None:
    relay = EdgeRelay("fra-1", 1, b"k")
    delta = routing_pb2.RouteTable(edge_id="fra-1", version=4, delta=True, entries=[hop("sin-1", 3, "vir-1", 2002, 1)])
    delta.table_size = 1
    with pytest.raises(RouteStreamBroken, match="before the whole table"):
        RouteStream(relay).apply(delta)
    assert held(relay) == {}


def test_deltas_update_the_table_the_stream_built() -> None:
    relay = EdgeRelay("fra-1", 1, b"k")
    stream = RouteStream(relay)
    stream.apply(WHOLE)
    stream.apply(
        routing_pb2.RouteTable(
            edge_id="fra-1",
            version=4,
            delta=True,
            entries=[hop("sin-1", 3, "hkg-1", 2004, 250), hop("hkg-1", 4, "hkg-1", 2004, 200)],
            removed_dest_edge_ids=["vir-1"],
            table_size=2,
        )
    )
    assert held(relay) == {"sin-1": ("hkg-1", 250), "hkg-1": ("hkg-1", 200)}
    assert relay.backbone.routes.version == 4 and set(relay.backbone.routes.by_number) == {3, 4}


@pytest.mark.parametrize(
    ("delta", "why"),
    [
        (
            routing_pb2.RouteTable(version=4, delta=True, removed_dest_edge_ids=["hkg-1"], table_size=1),
            "never had: hkg-1",
        ),
        (
            routing_pb2.RouteTable(version=4, delta=True, entries=[hop("hkg-1", 4, "vir-1", 2002, 1)], table_size=2),
            "would hold 3 destinations, the routing service holds 2",
        ),
    ],
)
def test_a_delta_that_does_not_fit_is_refused_and_leaves_the_table(delta: routing_pb2.RouteTable, why: str) -> None:
    relay = EdgeRelay("fra-1", 1, b"k")
    stream = RouteStream(relay)
    stream.apply(WHOLE)
    with pytest.raises(RouteStreamBroken, match=why):
        stream.apply(delta)
    assert held(relay) == {"vir-1": ("vir-1", 80), "sin-1": ("vir-1", 230)}


def test_a_changed_entry_the_edge_cannot_use_drops_the_old_one() -> None:
    relay = EdgeRelay("fra-1", 1, b"k")
    stream = RouteStream(relay)
    stream.apply(WHOLE)
    # sin-1 now goes through an edge that has not registered its address yet: no usable route,
    # and the old one (through vir-1) is no longer a least-cost path either.
    stream.apply(
        routing_pb2.RouteTable(version=5, delta=True, entries=[hop("sin-1", 3, "hkg-1", 0, 200)], table_size=2)
    )
    assert held(relay) == {"vir-1": ("vir-1", 80)}
    # ... and the stream still counts it, so the next delta fits.
    stream.apply(
        routing_pb2.RouteTable(version=6, delta=True, entries=[hop("sin-1", 3, "hkg-1", 2004, 200)], table_size=2)
    )
    assert held(relay) == {"vir-1": ("vir-1", 80), "sin-1": ("hkg-1", 200)}


class MisbehavingRouting(routing_pb2_grpc.RoutingServicer):
    """A routing service whose first WatchRoutes stream opens with a delta (as if the edge had missed
    the whole table); later streams open properly."""

    def __init__(self) -> None:
        self.watches: list[routing_pb2.WatchRoutesRequest] = []
        self.registrations = 0

    async def RegisterEdge(
        self, request: routing_pb2.RegisterEdgeRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.RegisterEdgeResponse:
        self.registrations += 1
        return routing_pb2.RegisterEdgeResponse()

    async def WatchRoutes(
        self, request: routing_pb2.WatchRoutesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[routing_pb2.RouteTable]:
        self.watches.append(request)
        if len(self.watches) == 1:
            yield routing_pb2.RouteTable(version=3, delta=True, entries=[hop("sin-1", 3, "vir-1", 2002, 1)])
        yield WHOLE
        await asyncio.Event().wait()  # the stream stays open


async def test_the_edge_watches_again_after_a_delta_it_cannot_place() -> None:
    routing = MisbehavingRouting()
    server, address = await start_server(
        "127.0.0.1:0", lambda s: routing_pb2_grpc.add_RoutingServicer_to_server(routing, s)
    )
    relay = EdgeRelay("fra-1", 1, b"k")
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            watch = asyncio.create_task(
                _stay_registered(routing_pb2_grpc.RoutingStub(channel), relay, routing_pb2.RegisterEdgeRequest(), ())
            )
            try:
                async with asyncio.timeout(10):
                    while not held(relay):  # noqa: ASYNC110 - polls the relay the watch task fills
                        await asyncio.sleep(0.01)
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
    finally:
        await server.stop(grace=0.5)
    assert held(relay) == {"vir-1": ("vir-1", 80), "sin-1": ("vir-1", 230)}  # the whole table, nothing else
    assert len(routing.watches) == 2 and all(w.deltas and w.edge_id == "fra-1" for w in routing.watches)
    assert routing.registrations == 1  # it registers again before watching again
