"""Edges whose legs and bridges are entries in dicts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from duet.services.matchmaker.ports import (
    EdgeInfo,
    Edges,
    Leg,
    PeerInvalidRequest,
    PeerNotFound,
    PeerNotReady,
    PeerUnavailable,
)


@dataclass
class FakeEdges(Edges):
    """Every edge's control plane at once; leg ids are "leg1", "leg2", ... across all edges.

    A leg is ready to bridge as soon as it is attached, unless it is in
    ``broken_legs``; an edge in ``down`` fails every request. Every call
    yields to the event loop once, as a round trip would.
    """

    # What every bridged side reports as its first video packet (edge clock, epoch ms); 0: no video yet.
    first_packet_at: float = 0.0
    # Injected failures: legs that never finish ICE/DTLS; edge ids that cannot be reached.
    broken_legs: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    # State, and a record of what was done.
    legs: dict[str, tuple[str, str]] = field(default_factory=dict)  # leg id -> (edge id, session id)
    bridges: dict[tuple[int, int], str] = field(default_factory=dict)  # (bridge id, side) -> leg id
    detached: list[str] = field(default_factory=list)
    unbridged: list[tuple[int, int]] = field(default_factory=list)
    _attached: int = field(default=0, init=False, repr=False)

    async def _reach(self, edge: EdgeInfo) -> None:
        await asyncio.sleep(0)
        if edge.edge_id in self.down:
            raise PeerUnavailable(f"edge {edge.edge_id} at {edge.control_address} is unreachable")

    def _leg_on(self, edge: EdgeInfo, leg_id: str) -> None:
        if self.legs.get(leg_id, ("", ""))[0] != edge.edge_id:
            raise PeerNotFound(f"no leg '{leg_id}' on edge {edge.edge_id}")

    async def attach_leg(self, edge: EdgeInfo, session_id: str, offer_sdp: str) -> Leg:
        await self._reach(edge)
        if not offer_sdp.startswith("v=0"):
            raise PeerInvalidRequest("the offer is not SDP (it must start with 'v=0')")
        self._attached += 1
        leg_id = f"leg{self._attached}"
        self.legs[leg_id] = (edge.edge_id, session_id)
        # "m=video ... H264" in the fake offer: a client that sends and decodes H.264 only.
        codecs = ("H264/42e01f",) if "H264" in offer_sdp and "VP8" not in offer_sdp else ("VP8", "H264/42e01f")
        return Leg(leg_id=leg_id, answer_sdp="v=0 answer", video_send_codec=codecs[0], video_receive_codecs=codecs)

    async def detach_leg(self, edge: EdgeInfo, leg_id: str) -> None:
        await self._reach(edge)
        self._leg_on(edge, leg_id)
        del self.legs[leg_id]
        self.detached.append(leg_id)

    async def bridge(self, edge: EdgeInfo, bridge_id: int, leg_id: str, side: int, peer_edge_id: str) -> float:
        await self._reach(edge)
        self._leg_on(edge, leg_id)
        if leg_id in self.broken_legs:
            raise PeerNotReady(f"leg '{leg_id}' has not finished ICE/DTLS yet")
        self.bridges[(bridge_id, side)] = leg_id
        return time.time() * 1000

    async def unbridge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        await self._reach(edge)
        if self.bridges.pop((bridge_id, side), None) is None:
            raise PeerNotFound(f"no bridge {bridge_id} side {side} on edge {edge.edge_id}")
        self.unbridged.append((bridge_id, side))
        return self.first_packet_at

    async def first_packet_at_edge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        await self._reach(edge)
        return self.first_packet_at if (bridge_id, side) in self.bridges else 0.0
