"""The routing and edge ports over gRPC: the matchmaker's clients of those services.

Replies become the ports' plain values and a failed RPC becomes the port's
error for its status code, so nothing gRPC reaches the core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from duet.services.auth.bearer import bearer_metadata
from duet.services.matchmaker.ports import (
    EdgeInfo,
    Edges,
    EdgeState,
    Ingress,
    Leg,
    PeerError,
    PeerInvalidRequest,
    PeerNotFound,
    PeerNotReady,
    PeerUnavailable,
    Route,
    RoutingService,
)
from duet.v1 import common_pb2, edge_pb2, edge_pb2_grpc, routing_pb2, routing_pb2_grpc

RPC_TIMEOUT_S = 5.0

# Statuses that say the request was refused; every other one (UNAVAILABLE,
# DEADLINE_EXCEEDED, INTERNAL, ...) means the peer could not serve it.
_REFUSALS: dict[grpc.StatusCode, type[PeerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: PeerInvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: PeerNotReady,
    grpc.StatusCode.NOT_FOUND: PeerNotFound,
}


def peer_error(exc: grpc.aio.AioRpcError) -> PeerError:
    """The port error for a failed RPC, with the peer's explanation as its message."""
    kind = _REFUSALS.get(exc.code(), PeerUnavailable)
    return kind(exc.details() or exc.code().name)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise peer_error(exc) from exc


def edge_state(value: int) -> EdgeState:
    """The wire enum's value as an EdgeState (by name); one this build does not know is UNSPECIFIED."""
    name = common_pb2.EdgeState.Name(value) if value in common_pb2.EdgeState.values() else ""
    return EdgeState.__members__.get(name.removeprefix("EDGE_STATE_"), EdgeState.UNSPECIFIED)


def edge_info(ref: common_pb2.EdgeRef) -> EdgeInfo:
    return EdgeInfo(
        edge_id=ref.edge_id,
        number=ref.number,
        region=ref.region,
        control_address=ref.control_address,
        backbone_address=ref.backbone_address,
        media_host=ref.media_host,
        state=edge_state(ref.state),
    )


class RoutingClient(RoutingService):
    """``token``: the matchmaker's service token, presented on every call."""

    def __init__(self, address: str, token: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = routing_pb2_grpc.RoutingStub(self._channel)
        self._metadata = bearer_metadata(token)

    async def pick_ingress(self, client_ip: str) -> Ingress:
        with _translated():
            reply = await self._stub.PickIngress(
                routing_pb2.PickIngressRequest(client_ip=client_ip), timeout=RPC_TIMEOUT_S, metadata=self._metadata
            )
        return Ingress(edge=edge_info(reply.edge), reason=reply.reason)

    async def pick_route(self, from_edge_id: str, to_edge_id: str) -> Route:
        with _translated():
            reply = await self._stub.PickRoute(
                routing_pb2.PickRouteRequest(from_edge_id=from_edge_id, to_edge_id=to_edge_id),
                timeout=RPC_TIMEOUT_S,
                metadata=self._metadata,
            )
        return Route(path=tuple(reply.path), rtt_ms=reply.rtt_ms)

    async def close(self) -> None:
        await self._channel.close()


class EdgeClients(Edges):
    """One channel per edge control address, opened on first use; ``token`` (the matchmaker's
    service token) is presented on every call."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)
        self._stubs: dict[str, tuple[grpc.aio.Channel, edge_pb2_grpc.EdgeControlStub]] = {}

    def _stub(self, address: str) -> edge_pb2_grpc.EdgeControlStub:
        if address not in self._stubs:
            channel = grpc.aio.insecure_channel(address)
            self._stubs[address] = (channel, edge_pb2_grpc.EdgeControlStub(channel))
        return self._stubs[address][1]

    async def attach_leg(self, edge: EdgeInfo, session_id: str, offer_sdp: str) -> Leg:
        with _translated():
            reply = await self._stub(edge.control_address).AttachLeg(
                edge_pb2.AttachLegRequest(session_id=session_id, offer_sdp=offer_sdp),
                timeout=RPC_TIMEOUT_S,
                metadata=self._metadata,
            )
        return Leg(
            leg_id=reply.leg_id,
            answer_sdp=reply.answer_sdp,
            video_send_codec=reply.video_send_codec,
            video_receive_codecs=tuple(reply.video_receive_codecs),
        )

    async def detach_leg(self, edge: EdgeInfo, leg_id: str) -> None:
        with _translated():
            await self._stub(edge.control_address).DetachLeg(
                edge_pb2.DetachLegRequest(leg_id=leg_id), timeout=RPC_TIMEOUT_S, metadata=self._metadata
            )

    async def bridge(self, edge: EdgeInfo, bridge_id: int, leg_id: str, side: int, peer_edge_id: str) -> float:
        with _translated():
            reply = await self._stub(edge.control_address).Bridge(
                edge_pb2.BridgeRequest(bridge_id=bridge_id, leg_id=leg_id, side=side, peer_edge_id=peer_edge_id),
                timeout=RPC_TIMEOUT_S,
                metadata=self._metadata,
            )
        return float(reply.bridged)

    async def unbridge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        with _translated():
            reply = await self._stub(edge.control_address).Unbridge(
                edge_pb2.UnbridgeRequest(bridge_id=bridge_id, side=side), timeout=RPC_TIMEOUT_S, metadata=self._metadata
            )
        return float(reply.stats.first_packet_at_edge)

    async def first_packet_at_edge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        with _translated():
            reply = await self._stub(edge.control_address).GetStats(
                edge_pb2.GetStatsRequest(bridge_id=bridge_id), timeout=RPC_TIMEOUT_S, metadata=self._metadata
            )
        for b in reply.bridges:
            if b.side == side:
                return float(b.first_packet_at_edge)
        return 0.0

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch, _ in self._stubs.values()), return_exceptions=True)
        self._stubs.clear()
