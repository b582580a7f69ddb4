"""The backbone between edges: one authenticated UDP socket per edge node.

Datagrams carry their destination edge; an edge that is not the destination
forwards them to the next hop from its route table (pushed by the routing
service), so a call's media follows the least-latency path hop by hop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from duet.edge.backbone_wire import (
    BackboneError,
    BackboneHeader,
    PacketType,
    StreamKind,
    decrement_ttl,
    pack,
    unpack,
)

logger = logging.getLogger("duet.edge.backbone")

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """'host:port' -> (host, port); raises ValueError with the offending text."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{text}' is not a host:port address")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class RouteEntry:
    dest_edge_id: str
    dest_number: int
    next_hop_edge_id: str
    next_hop_address: Address
    path_rtt_ms: float


@dataclass
class RouteTable:
    """Next hop per destination edge, as last pushed by the routing service."""

    version: int = 0
    by_number: dict[int, RouteEntry] = field(default_factory=dict)
    by_id: dict[str, RouteEntry] = field(default_factory=dict)

    def replace(self, version: int, entries: list[RouteEntry]) -> None:
        self.version = version
        self.by_number = {e.dest_number: e for e in entries}
        self.by_id = {e.dest_edge_id: e for e in entries}

    def update(self, version: int, changed: list[RouteEntry], removed: list[str]) -> None:
        """Apply a delta: drop the ``removed`` destinations, then add or replace the ``changed`` entries."""
        self.version = version
        for dest in removed:
            self._drop(self.by_id.pop(dest, None))
        for e in changed:
            self._drop(self.by_id.get(e.dest_edge_id))
            self.by_id[e.dest_edge_id] = e
            self.by_number[e.dest_number] = e

    def _drop(self, old: RouteEntry | None) -> None:
        # Only if the number still names this entry: a delta may hand its number to another edge.
        if old is not None and self.by_number.get(old.dest_number) is old:
            del self.by_number[old.dest_number]


@dataclass
class BackboneCounters:
    packets_in: int = 0
    packets_out: int = 0
    packets_relayed: int = 0
    bytes_in: int = 0  # datagram bytes, backbone header and tag included
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


DeliverHandler = Callable[[BackboneHeader, memoryview], None]
# (sending edge number, probe number) of a PROBE_REPLY addressed to this edge.
ProbeReplyHandler = Callable[[int, int], None]


class Backbone(asyncio.DatagramProtocol):
    """UDP endpoint of one edge: sends, relays and delivers backbone datagrams."""

    def __init__(self, edge_number: int, cluster_key: bytes, deliver: DeliverHandler, *, ttl: int = 8) -> None:
        self.edge_number = edge_number
        self.routes = RouteTable()
        self.counters = BackboneCounters()
        self._key = cluster_key
        self._deliver = deliver
        self._ttl = ttl
        self._transport: asyncio.DatagramTransport | None = None
        self.on_probe_reply: ProbeReplyHandler | None = None
        # Neighbours' backbone addresses -> edge ids (probe targets, which need not be next hops).
        self.peer_ids: dict[Address, str] = {}
        # Next hops this edge sent or relayed through since the prober last looked (it probes
        # those often): one set insert per datagram, against ~100 us of forwarding work.
        self.sent_via: set[str] = set()

    async def start(self, host: str, port: int = 0) -> Address:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def wrap_transport(self, wrap: Callable[[asyncio.DatagramTransport], asyncio.DatagramTransport]) -> None:
        """Send (and relay) through ``wrap(current transport)`` from now on; close() closes the wrapper.

        Hook for the WAN emulation test facility (``duet.services.devkit.wan``),
        which delays and drops datagrams per next hop. Nothing calls it unless
        emulation is configured, so normally nothing sits in the send path.
        """
        if self._transport is None:
            raise RuntimeError("start the backbone before wrapping its transport")
        self._transport = wrap(self._transport)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable from a peer that went away: count it, keep serving.
        self.counters.drop("socket error")
        logger.debug("backbone socket error: %s", exc)

    def send(self, header: BackboneHeader, payload: bytes | bytearray | memoryview) -> bool:
        entry = self.routes.by_number.get(header.dest_edge)
        if entry is None:
            self.counters.drop("no route")
            return False
        if self._transport is None:
            self.counters.drop("backbone closed")
            return False
        header.src_edge = self.edge_number
        header.ttl = self._ttl
        datagram = pack(header, payload, self._key)
        self._transport.sendto(datagram, entry.next_hop_address)
        self.sent_via.add(entry.next_hop_edge_id)
        self.counters.packets_out += 1
        self.counters.bytes_out += len(datagram)
        return True

    def send_probe(self, dest_number: int, probe_number: int, address: Address) -> None:
        """A PROBE straight to a neighbour's socket (not by route: it measures that one link)."""
        if self._transport is None:
            return
        header = BackboneHeader(PacketType.PROBE, dest_number, self.edge_number, probe_number, 0, StreamKind.AUDIO, 1)
        self._transport.sendto(pack(header, b"", self._key), address)

    def _answer_probe(self, header: BackboneHeader, addr: Address) -> None:
        if self._transport is None:
            return
        reply = BackboneHeader(
            PacketType.PROBE_REPLY, header.src_edge, self.edge_number, header.bridge_id, 0, StreamKind.AUDIO, 1
        )
        self._transport.sendto(pack(reply, b"", self._key), addr)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            header, payload = unpack(data, self._key)
        except BackboneError as exc:
            self.counters.drop(f"bad datagram: {exc.reason}")
            return
        self.counters.packets_in += 1
        self.counters.bytes_in += len(data)
        if header.dest_edge != self.edge_number:
            self._relay(header, data)
            return
        if header.ptype is PacketType.PROBE:
            self._answer_probe(header, addr)
            return
        if header.ptype is PacketType.PROBE_REPLY:
            if self.on_probe_reply is not None:
                self.on_probe_reply(header.src_edge, header.bridge_id)
            return
        try:
            self._deliver(header, payload)
        except Exception:  # one bad packet must never stop the edge
            logger.exception("dropping backbone packet for bridge %d", header.bridge_id)
            self.counters.drop("delivery error")

    def _relay(self, header: BackboneHeader, data: bytes) -> None:
        entry = self.routes.by_number.get(header.dest_edge)
        if entry is None or self._transport is None:
            self.counters.drop("no route")
            return
        buf = bytearray(data)
        if not decrement_ttl(buf):
            self.counters.drop("ttl expired")
            return
        self._transport.sendto(buf, entry.next_hop_address)
        self.counters.packets_relayed += 1
        self.sent_via.add(entry.next_hop_edge_id)
