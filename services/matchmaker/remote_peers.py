"""The matchmaker's clients of the routing service and of the edges.

Small typed wrappers over the gRPC stubs, so the matchmaker core speaks in
plain values and its tests can put fakes in their place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from duet.v1 import common_pb2, edge_pb2, edge_pb2_grpc, routing_pb2, routing_pb2_grpc

RPC_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class EdgeInfo:
    edge_id: str
    region: str
    control_address: str

    @classmethod
    def from_proto(cls, ref: common_pb2.EdgeRef) -> EdgeInfo:
        return cls(edge_id=ref.edge_id, region=ref.region, control_address=ref.control_address)


@dataclass(frozen=True)
class Ingress:
    edge: EdgeInfo
    edge_ref: common_pb2.EdgeRef
    reason: str


@dataclass(frozen=True)
class Route:
    path: list[str]
    rtt_ms: float


class RoutingClient:
    def __init__(self, address: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = routing_pb2_grpc.RoutingStub(self._channel)

    async def pick_ingress(self, client_ip: str) -> Ingress:
        reply = await self._stub.PickIngress(routing_pb2.PickIngressRequest(client_ip=client_ip), timeout=RPC_TIMEOUT_S)
        return Ingress(edge=EdgeInfo.from_proto(reply.edge), edge_ref=reply.edge, reason=reply.reason)

    async def pick_route(self, from_edge: str, to_edge: str) -> Route:
        reply = await self._stub.PickRoute(
            routing_pb2.PickRouteRequest(from_edge_id=from_edge, to_edge_id=to_edge), timeout=RPC_TIMEOUT_S
        )
        return Route(path=list(reply.path), rtt_ms=reply.rtt_ms)

    async def close(self) -> None:
        await self._channel.close()


class EdgeClients:
    """One channel per edge control address, opened on first use."""

    def __init__(self) -> None:
        self._stubs: dict[str, tuple[grpc.aio.Channel, edge_pb2_grpc.EdgeControlStub]] = {}

    def _stub(self, address: str) -> edge_pb2_grpc.EdgeControlStub:
        if address not in self._stubs:
            channel = grpc.aio.insecure_channel(address)
            self._stubs[address] = (channel, edge_pb2_grpc.EdgeControlStub(channel))
        return self._stubs[address][1]

    async def attach_leg(self, edge: EdgeInfo, session_id: str, offer_sdp: str) -> tuple[str, str]:
        reply = await self._stub(edge.control_address).AttachLeg(
            edge_pb2.AttachLegRequest(session_id=session_id, offer_sdp=offer_sdp), timeout=RPC_TIMEOUT_S
        )
        return reply.leg_id, reply.answer_sdp

    async def detach_leg(self, edge: EdgeInfo, leg_id: str) -> None:
        await self._stub(edge.control_address).DetachLeg(
            edge_pb2.DetachLegRequest(leg_id=leg_id), timeout=RPC_TIMEOUT_S
        )

    async def bridge(self, edge: EdgeInfo, bridge_id: int, leg_id: str, side: int, peer_edge_id: str) -> float:
        reply = await self._stub(edge.control_address).Bridge(
            edge_pb2.BridgeRequest(bridge_id=bridge_id, leg_id=leg_id, side=side, peer_edge_id=peer_edge_id),
            timeout=RPC_TIMEOUT_S,
        )
        return float(reply.bridged)

    async def unbridge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        """Returns the side's first_packet_at_edge (0 if no video reached it)."""
        reply = await self._stub(edge.control_address).Unbridge(
            edge_pb2.UnbridgeRequest(bridge_id=bridge_id, side=side), timeout=RPC_TIMEOUT_S
        )
        return float(reply.stats.first_packet_at_edge)

    async def first_packet_at_edge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        reply = await self._stub(edge.control_address).GetStats(
            edge_pb2.GetStatsRequest(bridge_id=bridge_id), timeout=RPC_TIMEOUT_S
        )
        for b in reply.bridges:
            if b.side == side:
                return float(b.first_packet_at_edge)
        return 0.0

    async def close(self) -> None:
        await asyncio.gather(*(ch.close() for ch, _ in self._stubs.values()), return_exceptions=True)
        self._stubs.clear()
