"""The routing service: ingress and path selection over ``routing/``, route tables pushed to edges.

The topology is declared in a file (or the 3-region default), or restored
from the audit log of changes made through the admin API (``admin.py``,
``restore.py``); edges register the addresses they bound at start, which
makes them eligible. Every change bumps the topology version, recomputes the
graph once, and wakes each edge's ``WatchRoutes`` stream so it gets its new
next-hop table (or, when it asked for deltas, just the entries that changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc

from duet.routing.all_pairs import AllPairsRoutes
from duet.routing.geo import GeoLocator, parse_ip
from duet.routing.ingress import NoEdgeAvailable, pick_ingress
from duet.routing.link_health import LinkReading
from duet.routing.next_hop_delta import next_hop_delta
from duet.routing.paths import NoRoute
from duet.routing.topology import EdgeNode, EdgeState, Topology, UnknownEdge
from duet.services.auth.secrets import AuthSecrets
from duet.services.metrics.exposition import DEFAULT_METRICS_HOST, MetricsServer
from duet.services.routing_server.admin import TopologyAdminServicer
from duet.services.routing_server.membership import EdgeLoad, LiveMembership, NotRegistered
from duet.services.routing_server.metrics import RoutingMetrics, timed
from duet.services.routing_server.restore import startup_topology
from duet.services.routing_server.route_table_wire import RouteTableEncoder
from duet.services.routing_server.state import RoutingState
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.errors import map_errors
from duet.services.rpc.server import start_server
from duet.services.store.postgres import EdgeRow, Store
from duet.services.store.topology_audit import MemoryTopologyAudit, PostgresTopologyAudit, TopologyAudit
from duet.v1 import admin_pb2_grpc, common_pb2, routing_pb2, routing_pb2_grpc

logger = logging.getLogger("duet.routing")

_STATE = {
    EdgeState.ACTIVE: common_pb2.EDGE_STATE_ACTIVE,
    EdgeState.DRAINING: common_pb2.EDGE_STATE_DRAINING,
    EdgeState.DOWN: common_pb2.EDGE_STATE_DOWN,
}

_ERRORS = {
    ValueError: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownEdge: grpc.StatusCode.NOT_FOUND,
    NoEdgeAvailable: grpc.StatusCode.UNAVAILABLE,
    NoRoute: grpc.StatusCode.FAILED_PRECONDITION,
    NotRegistered: grpc.StatusCode.FAILED_PRECONDITION,
}


def edge_ref(e: EdgeNode) -> common_pb2.EdgeRef:
    return common_pb2.EdgeRef(
        edge_id=e.edge_id,
        number=e.number,
        region=e.region,
        control_address=e.control_address,
        backbone_address=e.backbone_address,
        media_host=e.media_host,
        state=_STATE[e.state],
    )


class RoutingServicer(routing_pb2_grpc.RoutingServicer):
    def __init__(
        self,
        state: RoutingState,
        geo: GeoLocator,
        default_region: str,
        store: Store | None = None,
        metrics: RoutingMetrics | None = None,
        membership: LiveMembership | None = None,
    ) -> None:
        self.state = state
        self.geo = geo
        self.default_region = default_region
        self.store = store
        self.membership = membership or LiveMembership(state)
        self.metrics = metrics
        self.route_tables = RouteTableEncoder()

    @map_errors(_ERRORS)
    @timed("PickIngress")
    async def PickIngress(
        self, request: routing_pb2.PickIngressRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.PickIngressResponse:
        if not request.client_ip:
            raise ValueError("client_ip is required")
        parse_ip(request.client_ip)
        probes = {}
        for p in request.probes:
            if not p.edge_id:
                raise ValueError("every probe needs an edge_id")
            probes[p.edge_id] = p.rtt_ms
        located = self.geo.locate(request.client_ip)
        # The routed view: silent edges are DOWN there; live loads weigh busy edges.
        choice = pick_ingress(
            self.state.routed,
            located,
            probes=probes,
            loads=self.membership.ingress_loads(),
            default_region=self.default_region,
            require_registered=True,
        )
        return routing_pb2.PickIngressResponse(
            edge=edge_ref(choice.edge),
            estimated_rtt_ms=choice.estimated_rtt_ms,
            client_region=choice.client_region,
            reason=choice.reason,
        )

    @map_errors(_ERRORS)
    @timed("PickRoute")
    async def PickRoute(
        self, request: routing_pb2.PickRouteRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.PickRouteResponse:
        if not request.from_edge_id or not request.to_edge_id:
            raise ValueError("from_edge_id and to_edge_id are both required")
        for edge_id in (request.from_edge_id, request.to_edge_id):
            self.state.topology.edge(edge_id)  # UnknownEdge -> NOT_FOUND
        # Same edge included: a down or unregistered edge has no route, even to itself.
        path = self.state.routes.path(request.from_edge_id, request.to_edge_id)
        return routing_pb2.PickRouteResponse(path=list(path.edge_ids), rtt_ms=path.rtt_ms)

    async def WatchRoutes(
        self, request: routing_pb2.WatchRoutesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[routing_pb2.RouteTable]:
        if not request.edge_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "edge_id is required")
        if self.state.topology.find_edge(request.edge_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"edge '{request.edge_id}' is not in the topology")
        sent: AllPairsRoutes | None = None  # the routes the edge's table on this stream came from
        while True:
            # Read together: a change replaces them at once, so the table matches its version.
            topology, routes, generation = self.state.topology, self.state.routes, self.state.generation
            if topology.find_edge(request.edge_id) is None:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"edge '{request.edge_id}' was removed from the topology"
                )
            try:
                table = self._route_update(request.edge_id, topology.version, sent, routes, deltas=request.deltas)
            except Exception as exc:  # a stream has no map_errors: say INTERNAL, not UNKNOWN
                logger.exception("route table for %s failed", request.edge_id)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"WatchRoutes failed unexpectedly: {exc!r}; see the server log"
                )
            if table is not None:  # None: this edge's routes did not change, nothing to push
                yield table
                if self.metrics is not None:
                    self.metrics.route_pushed(request.edge_id, len(table.entries))
            sent = routes
            await self.state.wait_for_change(generation)

    def _route_update(
        self, edge_id: str, version: int, sent: AllPairsRoutes | None, routes: AllPairsRoutes, *, deltas: bool
    ) -> routing_pb2.RouteTable | None:
        """What to send an edge holding the table from ``sent`` (None: nothing yet), now that ``routes`` rule."""
        if sent is not None:
            delta = next_hop_delta(sent, routes, edge_id)
            if delta.empty:
                return None
            if deltas:
                return self.route_tables.table(
                    routes,
                    edge_id,
                    version,
                    delta.changed,
                    delta=True,
                    removed=delta.removed,
                    table_size=delta.table_size,
                )
        rows = routes.next_hop_rows(edge_id)
        return self.route_tables.table(routes, edge_id, version, rows, table_size=len(rows))

    @map_errors(_ERRORS)
    async def GetTopology(
        self, request: routing_pb2.GetTopologyRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.Topology:
        t = self.state.topology
        return routing_pb2.Topology(
            version=t.version,
            regions=[routing_pb2.Region(name=r.name, lat=r.lat, lon=r.lon) for r in t.regions],
            edges=[edge_ref(e) for e in t.edges],
            links=[routing_pb2.Link(a=ln.a, b=ln.b, rtt_ms=ln.rtt_ms, loss=ln.loss, up=ln.up) for ln in t.links],
        )

    @map_errors(_ERRORS)
    async def RegisterEdge(
        self, request: routing_pb2.RegisterEdgeRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.RegisterEdgeResponse:
        if not request.edge_id:
            raise ValueError("edge_id is required")
        for name in ("control_address", "backbone_address", "media_host"):
            if not getattr(request, name):
                raise ValueError(f"{name} is required")
        for name in ("control_address", "backbone_address"):
            host, sep, port = getattr(request, name).rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{name} must be host:port with a port in 1..65535, got {getattr(request, name)!r}")
        parse_ip(request.media_host)
        async with self.state.mutating:  # not between an admin change's read and its write
            topology = self.state.topology.with_edge_addresses(
                request.edge_id,
                control_address=request.control_address,
                backbone_address=request.backbone_address,
                media_host=request.media_host,
            )
            await self.state.replace(topology)
        edge = topology.edge(request.edge_id)
        await self.membership.registered(edge.edge_id)
        if self.store is not None:
            await self.store.upsert_edge(
                EdgeRow(
                    edge_id=edge.edge_id,
                    region=edge.region,
                    control_address=edge.control_address,
                    backbone_address=edge.backbone_address,
                    media_host=edge.media_host,
                    state=str(edge.state),
                )
            )
        logger.info(
            "edge %s registered: control %s, backbone %s (topology v%d)",
            edge.edge_id,
            edge.control_address,
            edge.backbone_address,
            topology.version,
        )
        return routing_pb2.RegisterEdgeResponse(edge=edge_ref(edge))

    @map_errors(_ERRORS)
    async def Heartbeat(
        self, request: routing_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.HeartbeatResponse:
        if not request.edge_id:
            raise ValueError("edge_id is required")
        if not (math.isfinite(request.cpu) and request.cpu >= 0):
            raise ValueError(f"cpu must be a finite number >= 0, got {request.cpu!r}")
        readings = {}
        for m in request.links:
            if not m.peer_edge_id:
                raise ValueError("every link measurement needs a peer_edge_id")
            try:
                readings[m.peer_edge_id] = LinkReading(m.rtt_ms, m.loss, m.reachable)
            except ValueError as exc:
                raise ValueError(f"link to {m.peer_edge_id}: {exc}") from None
        if not (math.isfinite(request.stalled_ms) and request.stalled_ms >= 0):
            raise ValueError(f"stalled_ms must be a finite number >= 0, got {request.stalled_ms!r}")
        neighbours = await self.membership.heartbeat(
            request.edge_id,
            EdgeLoad(request.legs, request.bridges, request.cpu),
            readings,
            stalled_s=request.stalled_ms / 1000,
        )
        return routing_pb2.HeartbeatResponse(neighbours=[edge_ref(n) for n in neighbours])

    async def WatchMembership(
        self, request: routing_pb2.WatchMembershipRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[routing_pb2.MembershipEvent]:
        async for change in self.membership.watch():
            yield routing_pb2.MembershipEvent(edge_id=change.edge_id, alive=change.alive, reason=change.reason)


async def serve_routing(
    topology: Topology,
    *,
    secrets: AuthSecrets,
    geoip_db: Path | Sequence[Path] | None = None,
    default_region: str | None = None,
    bind: str = "127.0.0.1:0",
    database: str | None = None,
    stop: asyncio.Event | None = None,
    topology_source: str = "the default topology",
    reset_topology: bool = False,
    measured_weights: bool = True,
    metrics_port: int | None = None,
    metrics_host: str = DEFAULT_METRICS_HOST,
) -> None:
    """Serve Routing and TopologyAdmin until ``stop`` is set.

    With a database, the last topology applied through the admin API is
    served instead of ``topology`` (which only seeds an empty audit log),
    unless ``reset_topology``; ``topology_source`` names it in the log. Every
    caller must present a service token signed with ``secrets``.
    ``measured_weights``: links take their probe-measured RTT and loss as
    weights (else only up/down follows the probes; see routing.link_health).
    caller must present a service token signed with ``secrets``. ``metrics_port`` (0 = any free)
    also serves Prometheus metrics (None: off).
    """
    stop = stop or asyncio.Event()
    secrets.require_service("the routing service verifies the edges', the matchmaker's and ops tokens with it")
    store = await Store.open(database) if database else None
    try:
        audit: TopologyAudit = PostgresTopologyAudit(store.pool) if store else MemoryTopologyAudit()
        topology = await startup_topology(topology, audit, source=topology_source, reset=reset_topology)
        default_region = default_region or topology.regions[0].name
        if not topology.has_region(default_region):
            raise SystemExit(
                f"default region {default_region!r} is not in the topology "
                f"({', '.join(r.name for r in topology.regions)})"
            )
    except BaseException:
        if store is not None:
            await store.close()
        raise
    geo = GeoLocator(geoip_db)
    logger.info("GeoIP databases: %s", ", ".join(geo.paths) or "none (clients fall back to the default region)")
    state = RoutingState(topology)
    membership = LiveMembership(state, measured_weights=measured_weights)
    metrics = RoutingMetrics()
    servicer = RoutingServicer(state, geo, default_region, store, metrics=metrics, membership=membership)
    admin = TopologyAdminServicer(state, audit)

    def add_servicers(s: grpc.aio.Server) -> None:
        routing_pb2_grpc.add_RoutingServicer_to_server(servicer, s)
        admin_pb2_grpc.add_TopologyAdminServicer_to_server(admin, s)

    try:
        server, address = await start_server(bind, add_servicers, interceptors=[AuthInterceptor(secrets)])
    except BaseException:
        geo.close()
        if store is not None:
            await store.close()
        raise
    logger.info(
        "routing serving on %s: %d regions, %d edges, default region %s",
        address,
        len(topology.regions),
        len(topology.edges),
        default_region,
    )
    sweeper = asyncio.create_task(membership.run(), name="membership sweep")
    try:
        async with contextlib.AsyncExitStack() as extras:
            scrape = ""
            if metrics_port is not None:
                url = await extras.enter_async_context(
                    MetricsServer(metrics.registry, host=metrics_host, port=metrics_port)
                )
                scrape = f" metrics={url}"
            print(f"routing ready address={address}{scrape}", flush=True)
            await stop.wait()
    finally:
        logger.info("routing shutting down")
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await server.stop(grace=1.0)
        geo.close()
        if store is not None:
            await store.close()
