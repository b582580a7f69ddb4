"""The edge process: EdgeControl gRPC over a ``duet.edge.relay.EdgeRelay``.

At start it binds its backbone socket and control port, registers both with
the routing service (which gives it its backbone number), and keeps a
``WatchRoutes`` stream open so route-table changes reach it live. It probes
its backbone neighbours and heartbeats its load and their measurements
(``heartbeat.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from duet.edge.bridge import BridgeSide
from duet.edge.ice_hosts import restrict_ice_to
from duet.edge.leg import OfferError
from duet.edge.relay import EdgeRelay, LegNotReady, UnknownBridge, UnknownLeg, UnknownPeer
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.secrets import AuthSecrets
from duet.services.devkit.errors import SetupError
from duet.services.devkit.wan.edge import edge_control_plane, emulate_edge
from duet.services.devkit.wan.profile import ENV_VAR, WanConfig
from duet.services.devkit.wan.reload import follow_wan_file, wan_file_from_env
from duet.services.edge_server.heartbeat import EdgePulse
from duet.services.edge_server.link_metrics import LinkCollector
from duet.services.edge_server.metrics import edge_registry
from duet.services.edge_server.route_watch import RouteStream, RouteStreamBroken
from duet.services.metrics.exposition import DEFAULT_METRICS_HOST, MetricsServer
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.errors import map_errors
from duet.services.rpc.server import start_server
from duet.v1 import edge_pb2, edge_pb2_grpc, routing_pb2, routing_pb2_grpc

logger = logging.getLogger("duet.edge.server")

_ERRORS = {
    OfferError: grpc.StatusCode.INVALID_ARGUMENT,
    ValueError: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownLeg: grpc.StatusCode.NOT_FOUND,
    UnknownBridge: grpc.StatusCode.NOT_FOUND,
    UnknownPeer: grpc.StatusCode.FAILED_PRECONDITION,
    LegNotReady: grpc.StatusCode.FAILED_PRECONDITION,
}


def bridge_stats(s: BridgeSide) -> edge_pb2.BridgeStats:
    return edge_pb2.BridgeStats(
        bridge_id=s.bridge_id,
        side=s.side,
        leg_id=s.leg.leg_id,
        bridged=s.bridged_ms,
        first_packet_at_edge=s.first_packet_at_edge_ms,
        packets_out=s.packets_out,
        packets_in=s.packets_in,
        plis_relayed=s.keyframe_requests_relayed,
        cache_packets_replayed=s.cache_packets_replayed,
        bytes_out=s.bytes_out,
        bytes_in=s.bytes_in,
        recovery=s.recovery(),
    )


class EdgeControlServicer(edge_pb2_grpc.EdgeControlServicer):
    def __init__(self, node: EdgeRelay) -> None:
        self.node = node

    @map_errors(_ERRORS)
    async def AttachLeg(
        self, request: edge_pb2.AttachLegRequest, context: grpc.aio.ServicerContext
    ) -> edge_pb2.AttachLegResponse:
        if not request.session_id:
            raise ValueError("session_id is required")
        leg = await self.node.attach_leg(request.session_id, request.offer_sdp)
        return edge_pb2.AttachLegResponse(
            leg_id=leg.leg_id,
            answer_sdp=leg.answer_sdp,
            video_send_codec=leg.video_send_codec,
            video_receive_codecs=leg.video_receive_codecs,
        )

    @map_errors(_ERRORS)
    async def DetachLeg(
        self, request: edge_pb2.DetachLegRequest, context: grpc.aio.ServicerContext
    ) -> edge_pb2.DetachLegResponse:
        if not request.leg_id:
            raise ValueError("leg_id is required")
        await self.node.detach_leg(request.leg_id)
        return edge_pb2.DetachLegResponse()

    @map_errors(_ERRORS)
    async def Bridge(
        self, request: edge_pb2.BridgeRequest, context: grpc.aio.ServicerContext
    ) -> edge_pb2.BridgeResponse:
        if not request.leg_id:
            raise ValueError("leg_id is required")
        if not request.peer_edge_id:
            raise ValueError("peer_edge_id is required")
        side = self.node.bridge(request.bridge_id, request.leg_id, request.side, request.peer_edge_id)
        return edge_pb2.BridgeResponse(bridged=side.bridged_ms)

    @map_errors(_ERRORS)
    async def Unbridge(
        self, request: edge_pb2.UnbridgeRequest, context: grpc.aio.ServicerContext
    ) -> edge_pb2.UnbridgeResponse:
        removed = self.node.unbridge(request.bridge_id, request.side)
        return edge_pb2.UnbridgeResponse(stats=bridge_stats(removed))

    @map_errors(_ERRORS)
    async def GetStats(
        self, request: edge_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> edge_pb2.EdgeStats:
        snap = self.node.stats(request.bridge_id)
        return edge_pb2.EdgeStats(
            edge_id=snap.edge_id,
            legs=snap.legs,
            bridges=[bridge_stats(s) for s in snap.bridges],
            dropped=snap.dropped,
            backbone_packets_in=snap.backbone_packets_in,
            backbone_packets_out=snap.backbone_packets_out,
            backbone_bytes_in=snap.backbone_bytes_in,
            backbone_bytes_out=snap.backbone_bytes_out,
            recovery=snap.recovery,
            feedback=snap.feedback,
        )


# Refusals that retrying cannot fix: the edge exits and says why.
_FATAL = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)


async def _register(
    stub: routing_pb2_grpc.RoutingStub,
    request: routing_pb2.RegisterEdgeRequest,
    stop: asyncio.Event,
    metadata: tuple[tuple[str, str], ...],
) -> routing_pb2.RegisterEdgeResponse:
    delay = 0.1
    while not stop.is_set():
        try:
            reply: routing_pb2.RegisterEdgeResponse = await stub.RegisterEdge(request, timeout=5, metadata=metadata)
            return reply
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _FATAL:
                raise SystemExit(f"routing service refused edge {request.edge_id}: {exc.details()}") from exc
            logger.warning("routing service not reachable (%s); retrying in %.1f s", exc.code().name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise asyncio.CancelledError


async def _stay_registered(
    stub: routing_pb2_grpc.RoutingStub,
    node: EdgeRelay,
    request: routing_pb2.RegisterEdgeRequest,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    """Keep the route table current; after a routing-service restart, register again first."""
    delay = 0.1
    first = True
    while True:
        try:
            if not first:
                await stub.RegisterEdge(request, timeout=5, metadata=metadata)
                logger.info("edge %s registered again with the routing service", node.edge_id)
            first = False
            watch = stub.WatchRoutes(
                routing_pb2.WatchRoutesRequest(edge_id=node.edge_id, deltas=True), metadata=metadata
            )
            stream = RouteStream(node)  # a new stream starts with the whole table
            try:
                async for table in watch:
                    stream.apply(table)
                    delay = 0.1
            except RouteStreamBroken as exc:
                watch.cancel()
                logger.warning("route watch: %s; watching again for the whole table", exc)
        except grpc.aio.AioRpcError as exc:
            logger.warning("route watch ended (%s: %s); reconnecting", exc.code().name, exc.details())
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def serve_edge(
    edge_id: str,
    routing_address: str,
    cluster_key: bytes,
    *,
    secrets: AuthSecrets,
    token: str,
    host: str = "127.0.0.1",
    control_port: int = 0,
    backbone_port: int = 0,
    metrics_port: int | None = None,
    metrics_host: str = DEFAULT_METRICS_HOST,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set; ``metrics_port`` (0 = any free) also serves Prometheus metrics (None: off).

    ``token``: this edge's service token (role edge, bound to ``edge_id``), presented to the routing
    service; ``secrets``: the service-token secret that EdgeControl callers' tokens are verified with.
    """
    stop = stop or asyncio.Event()
    secrets.require_service("the edge verifies the matchmaker's and ops tokens with it")
    metadata = bearer_metadata(token)
    try:  # WAN emulation: a test facility, off unless $DUET_WAN says otherwise
        wan = WanConfig.from_env()
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    restrict_ice_to([host])
    node = EdgeRelay(edge_id, 0, cluster_key)
    backbone = await node.start(host, backbone_port)
    emulation = emulate_edge(node, wan)
    wan_file = wan_file_from_env() if emulation is not None else None
    server, control_address = await start_server(
        f"{host}:{control_port}",
        lambda s: edge_pb2_grpc.add_EdgeControlServicer_to_server(EdgeControlServicer(node), s),
        interceptors=[AuthInterceptor(secrets)],
    )
    tasks: list[asyncio.Task[None]] = []
    extras = contextlib.AsyncExitStack()
    channel: grpc.aio.Channel | None = None
    try:
        # WAN emulation of the control plane: both addresses become delay proxies when configured.
        try:
            routing_address, advertised_control = await extras.enter_async_context(
                edge_control_plane(wan, edge_id, routing=routing_address, control=control_address, host=host)
            )
        except ValueError as exc:
            raise SetupError(f"{ENV_VAR}: {exc}") from exc
        channel = grpc.aio.insecure_channel(routing_address)
        stub = routing_pb2_grpc.RoutingStub(channel)
        pulse = EdgePulse(node, stub, metadata)
        metrics = ""
        if metrics_port is not None:
            registry = edge_registry(node)
            registry.register(LinkCollector(edge_id, pulse.prober))
            url = await extras.enter_async_context(MetricsServer(registry, host=metrics_host, port=metrics_port))
            metrics = f" metrics={url}"
        registration = routing_pb2.RegisterEdgeRequest(
            edge_id=edge_id,
            control_address=advertised_control,
            backbone_address=f"{backbone[0]}:{backbone[1]}",
            media_host=host,
        )
        reply = await _register(stub, registration, stop, metadata)
        node.assign_number(reply.edge.number)
        tasks = [
            asyncio.create_task(_stay_registered(stub, node, registration, metadata), name="route watch"),
            asyncio.create_task(pulse.run_heartbeats(), name="heartbeats"),
            asyncio.create_task(pulse.run_probes(), name="probes"),
        ]
        if emulation is not None and wan_file is not None:
            tasks.append(asyncio.create_task(follow_wan_file(emulation, wan_file), name="WAN file"))
        logger.info("edge %s (#%d, %s) serving control on %s", edge_id, node.number, reply.edge.region, control_address)
        print(
            f"edge {edge_id} ready control={advertised_control} backbone={backbone[0]}:{backbone[1]}{metrics}",
            flush=True,
        )
        await stop.wait()
    finally:
        logger.info("edge %s shutting down", edge_id)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop(grace=1.0)
        await node.stop()
        if channel is not None:
            await channel.close()
        await extras.aclose()  # the control proxies last: replies in flight still pass through them
