"""One edge node: its legs, its bridges and its backbone socket.

Transport-free of gRPC: ``duet.services.edge_server`` is the thin control layer
over this class, so the forwarding logic is testable in-process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from duet.edge.backbone import Address, Backbone, RouteEntry
from duet.edge.backbone_wire import EDGE_NUMBER_MAX, BackboneHeader, PacketType, StreamKind
from duet.edge.bridge import BridgeSide, BridgeTable
from duet.edge.keyframe import is_keyframe_start
from duet.edge.leg import KEYFRAME_REQUEST_INTERVAL_S, Leg

logger = logging.getLogger("duet.edge")

# The two edges of a call install their bridge sides concurrently, and each asks its own
# client for a keyframe the moment its side is in. The sender's keyframe can therefore reach
# the partner's edge before that edge has its side: held here briefly and replayed when the
# side is installed, it is not lost (losing it costs the receiver a retry 0.3 s later, and
# libwebrtc honours one keyframe request per 300 ms anyway). Bounded: a bridge that never
# comes (or one that just ended) only costs memory for this long.
EARLY_MEDIA_HOLD_S = 1.0
EARLY_MEDIA_MAX_PACKETS = 256  # per bridge side: a keyframe at 640x480 is ~10-40 packets
EARLY_MEDIA_MAX_SIDES = 64


@dataclass
class _EarlyMedia:
    """Media for a bridge side this edge does not hold (yet)."""

    since: float  # monotonic
    src_edge: int
    packets: list[tuple[StreamKind, bytearray, bool]] = field(default_factory=list)  # kind, packet, cached


class EdgeError(Exception):
    """Base of the errors the control API turns into gRPC statuses."""


class UnknownLeg(EdgeError, LookupError):
    pass


class UnknownBridge(EdgeError, LookupError):
    pass


class UnknownPeer(EdgeError):
    """The peer edge is not in this edge's route table (yet)."""


class LegNotReady(EdgeError):
    pass


def _check_bridge_side(bridge_id: int, side: int) -> None:
    if bridge_id <= 0 or bridge_id >= 2**64:
        raise ValueError("bridge_id must be a positive 64-bit integer")
    if side not in (0, 1):
        raise ValueError(f"side must be 0 or 1, got {side}")


@dataclass
class EdgeStatsSnapshot:
    edge_id: str
    legs: int
    bridges: list[BridgeSide]
    dropped: dict[str, int] = field(default_factory=dict)
    backbone_packets_in: int = 0
    backbone_packets_out: int = 0
    backbone_bytes_in: int = 0
    backbone_bytes_out: int = 0
    recovery: dict[str, int] = field(default_factory=dict)  # loss recovery events (LegCounters.recovery)
    feedback: dict[str, int] = field(default_factory=dict)  # bandwidth feedback events (LegCounters.feedback)


@dataclass(frozen=True)
class AttachedLeg:
    """A new leg: its id, the SDP answer, and the video codecs its client sends and decodes."""

    leg_id: str
    answer_sdp: str
    video_send_codec: str
    video_receive_codecs: tuple[str, ...]


class EdgeRelay:
    def __init__(self, edge_id: str, number: int, cluster_key: bytes) -> None:
        # number 0 = not yet registered with the routing service (see assign_number)
        if not 0 <= number <= EDGE_NUMBER_MAX:
            raise ValueError(f"edge number must be 1..{EDGE_NUMBER_MAX}, got {number}")
        self.edge_id = edge_id
        self.number = number
        self.legs: dict[str, Leg] = {}
        self.bridges = BridgeTable()
        self.backbone = Backbone(number, cluster_key, self._deliver_from_backbone)
        self.backbone_address: Address | None = None
        self._dropped: dict[str, int] = {}
        self._closed_legs_dropped: dict[str, int] = {}
        self._closed_legs_recovery: dict[str, int] = {}
        self._closed_legs_feedback: dict[str, int] = {}
        self._early: dict[tuple[int, int], _EarlyMedia] = {}

    def assign_number(self, number: int) -> None:
        """Set the backbone number the routing service gave this edge at registration."""
        if not 0 < number <= EDGE_NUMBER_MAX:
            raise ValueError(f"edge number must be 1..{EDGE_NUMBER_MAX}, got {number}")
        self.number = number
        self.backbone.edge_number = number

    async def start(self, backbone_host: str = "127.0.0.1", backbone_port: int = 0) -> Address:
        self.backbone_address = await self.backbone.start(backbone_host, backbone_port)
        logger.info("edge %s (#%d) backbone on %s:%d", self.edge_id, self.number, *self.backbone_address)
        return self.backbone_address

    async def stop(self) -> None:
        for leg in list(self.legs.values()):
            await leg.close(reason="edge shutting down")
        self.backbone.close()

    def set_routes(self, version: int, entries: list[RouteEntry]) -> None:
        """Replace the route table with a whole one (as the routing service pushes it)."""
        before = self._bridged_routes()
        self.backbone.routes.replace(version, entries)
        rerouted = self._reroute(before)
        logger.info(
            "edge %s: route table v%d with %d destinations%s",
            self.edge_id,
            version,
            len(entries),
            f"; {rerouted} bridge sides rerouted, keyframes asked for" if rerouted else "",
        )

    def update_routes(self, version: int, changed: list[RouteEntry], removed: list[str]) -> None:
        """Apply a route delta: ``changed`` entries added or replaced, ``removed`` destinations dropped."""
        before = self._bridged_routes()
        self.backbone.routes.update(version, changed, removed)
        rerouted = self._reroute(before)
        logger.info(
            "edge %s: route table v%d: %d destinations changed, %d removed, %d held%s",
            self.edge_id,
            version,
            len(changed),
            len(removed),
            len(self.backbone.routes.by_id),
            f"; {rerouted} bridge sides rerouted, keyframes asked for" if rerouted else "",
        )

    def _bridged_routes(self) -> dict[int, RouteEntry]:
        """The current routes to the partner edges of this edge's bridges."""
        routes = self.backbone.routes.by_number
        return {
            bside.peer_edge_number: entry
            for bside in self.bridges.all()
            if (entry := routes.get(bside.peer_edge_number)) is not None
        }

    def _reroute(self, before: dict[int, RouteEntry]) -> int:
        """Restart the streams of bridge sides whose partner edge is now reached by another next hop."""
        after = self.backbone.routes.by_number
        rerouted = 0
        for bside in self.bridges.all():
            old, new = before.get(bside.peer_edge_number), after.get(bside.peer_edge_number)
            if old is not None and new is not None and old.next_hop_edge_id != new.next_hop_edge_id:
                self._rerouted(bside)
                rerouted += 1
        return rerouted

    def _rerouted(self, bside: BridgeSide) -> None:
        """The path to this side's partner changed (a link or an edge on it failed, or got worse).

        What the old path lost cannot be repaired from that far back, so both
        streams restart as at a bridge, on the new path: this client starts a
        fresh picture now (the partner's edge does the same for the partner),
        and this leg's partner video waits for that keyframe with its numbers
        kept continuous, so the client's jitter buffer sees no hole to wait on
        and decodes the keyframe as it arrives.
        """
        bside.leg.request_keyframe(StreamKind.VIDEO, force=True)
        bside.awaiting_keyframe = True
        bside.video_from_cache = False
        bside.leg.switch_source()

    # -- legs -------------------------------------------------------------

    async def attach_leg(self, session_id: str, offer_sdp: str) -> AttachedLeg:
        leg = Leg(
            session_id,
            on_rtp=self._forward_from_leg,
            on_keyframe_request=self._relay_keyframe_request,
            on_closed=self._forget_leg,
            on_nack_upstream=self._relay_nack,
            on_bitrate=self._relay_bitrate,
        )
        answer = await leg.accept(offer_sdp)
        self.legs[leg.leg_id] = leg
        video = StreamKind.VIDEO
        attached = AttachedLeg(
            leg_id=leg.leg_id,
            answer_sdp=answer,
            video_send_codec=leg.payload_types.send[video],
            video_receive_codecs=tuple(leg.payload_types.receive[video]),
        )
        logger.info(
            "edge %s: leg %s attached for session %s (sends %s, decodes %s)",
            self.edge_id,
            leg.leg_id,
            session_id,
            attached.video_send_codec,
            ", ".join(attached.video_receive_codecs),
        )
        return attached

    async def detach_leg(self, leg_id: str) -> None:
        leg = self.legs.get(leg_id)
        if leg is None:
            raise UnknownLeg(f"no leg '{leg_id}' on edge {self.edge_id}")
        await leg.close(reason="detached")

    async def _forget_leg(self, leg: Leg) -> None:
        self.legs.pop(leg.leg_id, None)
        self.bridges.remove_leg(leg.leg_id)
        for reason, n in leg.counters.dropped.items():
            self._closed_legs_dropped[reason] = self._closed_legs_dropped.get(reason, 0) + n
        for event, n in leg.counters.recovery.items():
            self._closed_legs_recovery[event] = self._closed_legs_recovery.get(event, 0) + n
        for event, n in leg.counters.feedback.items():
            self._closed_legs_feedback[event] = self._closed_legs_feedback.get(event, 0) + n

    # -- bridges ----------------------------------------------------------

    def bridge(self, bridge_id: int, leg_id: str, side: int, peer_edge_id: str) -> BridgeSide:
        _check_bridge_side(bridge_id, side)
        leg = self.legs.get(leg_id)
        if leg is None:
            raise UnknownLeg(f"no leg '{leg_id}' on edge {self.edge_id}")
        if not leg.connected:
            raise LegNotReady(f"leg '{leg_id}' has not finished ICE/DTLS yet")
        if peer_edge_id == self.edge_id:
            peer_number = self.number
        else:
            entry = self.backbone.routes.by_id.get(peer_edge_id)
            if entry is None:
                raise UnknownPeer(f"edge {self.edge_id} has no route to edge '{peer_edge_id}'")
            peer_number = entry.dest_number
        bside = BridgeSide(
            bridge_id=bridge_id,
            side=side,
            leg=leg,
            peer_edge_id=peer_edge_id,
            peer_edge_number=peer_number,
            bridged_ms=time.time() * 1000,
            recovery_at_start=dict(leg.counters.recovery),
        )
        self.bridges.add(bside)
        # A new partner feeds this leg now: keep its seq/timestamps continuous.
        leg.switch_source()
        # The partner can only decode from a keyframe: ask our client for one now, and meanwhile
        # give the partner the one we keep (edge/keyframe_cache.py).
        leg.request_keyframe(StreamKind.VIDEO, force=True)
        self._replay_cached_keyframe(bside)
        self._replay_early(bside)
        logger.info(
            "edge %s: bridge %d side %d -> leg %s, peer on %s", self.edge_id, bridge_id, side, leg_id, peer_edge_id
        )
        return bside

    def unbridge(self, bridge_id: int, side: int) -> BridgeSide:
        _check_bridge_side(bridge_id, side)
        removed = self.bridges.remove(bridge_id, side)
        if removed is None:
            raise UnknownBridge(f"no bridge {bridge_id} side {side} on edge {self.edge_id}")
        return removed

    # -- media ------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + 1

    def _forward_from_leg(self, leg: Leg, kind: StreamKind, data: bytes) -> None:
        bside = self.bridges.of_leg(leg.leg_id)
        if bside is None:
            self._drop("media from unbridged leg")  # warm leg waiting in the queue
            return
        packet = leg.to_backbone(kind, data)
        if packet is None:
            return
        bside.packets_in += 1
        bside.bytes_in += len(data)
        if bside.peer_edge_number == self.number:
            # The leg made the packet its own copy when it mapped the extensions.
            self._deliver_local(bside.bridge_id, bside.peer_side, kind, packet)
            return
        self._send_to_peer(bside, PacketType.MEDIA, kind, packet)

    def _send_to_peer(self, bside: BridgeSide, ptype: PacketType, kind: StreamKind, payload: bytes | bytearray) -> None:
        """Over the backbone to the edge holding the other side of ``bside``'s bridge."""
        header = BackboneHeader(
            ptype=ptype,
            dest_edge=bside.peer_edge_number,
            src_edge=self.number,
            bridge_id=bside.bridge_id,
            side=bside.peer_side,
            kind=kind,
        )
        self.backbone.send(header, payload)

    def _replay_cached_keyframe(self, bside: BridgeSide) -> None:
        """This leg's cached keyframe to the new partner, now (the partner's edge holds live video after it)."""
        for raw in bside.leg.cached_keyframe():
            packet = bside.leg.to_backbone(StreamKind.VIDEO, raw)
            if packet is None:
                continue
            bside.cache_packets_replayed += 1
            if bside.peer_edge_number == self.number:
                self._deliver_local(bside.bridge_id, bside.peer_side, StreamKind.VIDEO, packet, cached=True)
            else:
                self._send_to_peer(bside, PacketType.CACHED_MEDIA, StreamKind.VIDEO, packet)

    def _deliver_local(
        self, bridge_id: int, side: int, kind: StreamKind, packet: bytearray, *, cached: bool = False
    ) -> None:
        target = self.bridges.get(bridge_id, side)
        if target is None:
            self._hold_early(bridge_id, side, self.number, kind, packet, cached)
            return
        self._deliver(target, kind, packet, cached=cached)

    def _hold_early(
        self, bridge_id: int, side: int, src_edge: int, kind: StreamKind, packet: bytearray, cached: bool = False
    ) -> None:
        """Media for a side not installed (yet): kept for EARLY_MEDIA_HOLD_S in case it is about to be."""
        now = time.monotonic()
        self._expire_early(now)
        key = (bridge_id, side)
        early = self._early.get(key)
        if early is None:
            if len(self._early) >= EARLY_MEDIA_MAX_SIDES:
                self._drop("unknown bridge")
                return
            early = self._early[key] = _EarlyMedia(since=now, src_edge=src_edge)
        if early.src_edge != src_edge or len(early.packets) >= EARLY_MEDIA_MAX_PACKETS:
            self._drop("unknown bridge")
            return
        early.packets.append((kind, packet, cached))

    def _expire_early(self, now: float) -> None:
        for key in [k for k, e in self._early.items() if now - e.since > EARLY_MEDIA_HOLD_S]:
            for _ in self._early.pop(key).packets:
                self._drop("unknown bridge")

    def _replay_early(self, bside: BridgeSide) -> None:
        early = self._early.pop((bside.bridge_id, bside.side), None)
        self._expire_early(time.monotonic())
        if early is None:
            return
        if early.src_edge != bside.peer_edge_number:
            for _ in early.packets:
                self._drop("bridge/peer mismatch")
            return
        logger.debug(
            "edge %s: bridge %d side %d: %d early packets replayed",
            self.edge_id,
            bside.bridge_id,
            bside.side,
            len(early.packets),
        )
        for kind, packet, cached in early.packets:
            # What came before the keyframe is stale: dropped without asking the sender again.
            self._deliver(bside, kind, packet, ask_for_keyframe=False, cached=cached)

    def _deliver(
        self,
        target: BridgeSide,
        kind: StreamKind,
        packet: bytearray,
        *,
        ask_for_keyframe: bool = True,
        cached: bool = False,
    ) -> None:
        """Partner media into ``target``'s leg, video held back until a keyframe starts.

        ``cached``: a keyframe replayed from the partner's edge cache. The live
        video after it refers to pictures this leg never got, so it is held
        back in turn until a fresh keyframe, where the leg's stream restarts.
        """
        if kind == StreamKind.VIDEO:
            if target.awaiting_keyframe:
                if not is_keyframe_start(packet):
                    self._drop("video before keyframe")
                    if ask_for_keyframe:
                        self._ask_for_keyframe(target)
                    return
                target.awaiting_keyframe = False
                target.video_from_cache = cached
            elif cached != target.video_from_cache:
                if cached:
                    self._drop("cached keyframe after live video")
                    return
                if not is_keyframe_start(packet):
                    self._drop("video after cached keyframe")
                    if ask_for_keyframe:
                        self._ask_for_keyframe(target)
                    return
                target.video_from_cache = False
                target.leg.switch_source(StreamKind.VIDEO)  # the fresh keyframe restarts the stream
        if target.leg.send_rtp(kind, packet):
            target.note_packet_out(kind == StreamKind.VIDEO, len(packet))

    def _ask_for_keyframe(self, target: BridgeSide) -> None:
        """Ask the partner's sender for a keyframe for ``target``, at most once per interval."""
        now = time.monotonic()
        if now - target.last_keyframe_ask >= KEYFRAME_REQUEST_INTERVAL_S:
            target.last_keyframe_ask = now
            self._relay_keyframe_request(target.leg, StreamKind.VIDEO)

    def _toward_sender(
        self,
        leg: Leg,
        local: Callable[[Leg], object],
        ptype: PacketType,
        kind: StreamKind,
        payload: bytes,
    ) -> BridgeSide | None:
        """Feedback from ``leg``'s client for its partner's sender: to that leg if it is on this
        edge (``local``), else over the backbone to the partner's edge. The side, if bridged."""
        bside = self.bridges.of_leg(leg.leg_id)
        if bside is None:
            return None
        if bside.peer_edge_number == self.number:
            target = self.bridges.get(bside.bridge_id, bside.peer_side)
            if target is not None:
                local(target.leg)
        else:
            self._send_to_peer(bside, ptype, kind, payload)
        return bside

    def _relay_nack(self, leg: Leg, kind: StreamKind, seqs: list[int]) -> None:
        """``leg``'s client lost partner packets this edge never had: ask the partner's sender."""
        payload = b"".join(s.to_bytes(2, "big") for s in seqs[:256])
        self._toward_sender(
            leg, lambda sender: sender.request_retransmission(kind, seqs), PacketType.NACK, kind, payload
        )

    def _relay_bitrate(self, leg: Leg, bitrate: int) -> None:
        """``leg``'s client can take ``bitrate``: tell the partner's sender."""
        payload = min(bitrate, 0xFFFFFFFF).to_bytes(4, "big")
        self._toward_sender(
            leg, lambda sender: sender.apply_bitrate(bitrate), PacketType.BITRATE, StreamKind.VIDEO, payload
        )

    def _relay_keyframe_request(self, leg: Leg, kind: StreamKind) -> None:
        bside = self._toward_sender(
            leg, lambda sender: sender.request_keyframe(kind), PacketType.KEYFRAME_REQUEST, kind, b""
        )
        if bside is not None:
            bside.keyframe_requests_relayed += 1

    def _deliver_from_backbone(self, header: BackboneHeader, payload: memoryview) -> None:
        target = self.bridges.get(header.bridge_id, header.side)
        cached = header.ptype == PacketType.CACHED_MEDIA
        if target is None:
            if header.ptype == PacketType.MEDIA or cached:
                self._hold_early(
                    header.bridge_id, header.side, header.src_edge, header.kind, bytearray(payload), cached
                )
            else:
                self._drop("unknown bridge")
            return
        if target.peer_edge_number != header.src_edge:
            # A leg carries only its own bridge's media.
            self._drop("bridge/peer mismatch")
            return
        if header.ptype == PacketType.MEDIA or cached:
            self._deliver(target, header.kind, bytearray(payload), cached=cached)
        elif header.ptype == PacketType.KEYFRAME_REQUEST:
            target.leg.request_keyframe(header.kind)
        elif header.ptype == PacketType.BITRATE:
            if len(payload) == 4:
                target.leg.apply_bitrate(int.from_bytes(payload, "big"))
        elif header.ptype == PacketType.NACK:
            seqs = [(payload[i] << 8) | payload[i + 1] for i in range(0, len(payload) - 1, 2)]
            if seqs:
                target.leg.request_retransmission(header.kind, seqs)
        else:
            self._drop("unexpected packet type")

    # -- stats ------------------------------------------------------------

    def stats(self, bridge_id: int = 0) -> EdgeStatsSnapshot:
        dropped = dict(self._dropped)
        for source in [self._closed_legs_dropped, self.backbone.counters.dropped] + [
            leg.counters.dropped for leg in self.legs.values()
        ]:
            for reason, n in source.items():
                dropped[reason] = dropped.get(reason, 0) + n
        recovery = dict(self._closed_legs_recovery)
        feedback = dict(self._closed_legs_feedback)
        for leg in self.legs.values():
            for event, n in leg.counters.recovery.items():
                recovery[event] = recovery.get(event, 0) + n
            for event, n in leg.counters.feedback.items():
                feedback[event] = feedback.get(event, 0) + n
        sides = [s for s in self.bridges.all() if bridge_id in (0, s.bridge_id)]
        return EdgeStatsSnapshot(
            recovery=recovery,
            feedback=feedback,
            edge_id=self.edge_id,
            legs=len(self.legs),
            bridges=sides,
            dropped=dropped,
            backbone_packets_in=self.backbone.counters.packets_in,
            backbone_packets_out=self.backbone.counters.packets_out,
            backbone_bytes_in=self.backbone.counters.bytes_in,
            backbone_bytes_out=self.backbone.counters.bytes_out,
        )
