"""A plain UDP packet relay between two clients, as a TURN-relayed call has, with emulated delay.

Each client is given the other's candidate rewritten to one of the relay's
two sockets: what arrives on ``for_a`` (sent by b, meant for a) leaves from
``for_b`` to a's real address, and the other way round, so each client sees
its partner at the address it was told. Each direction is delayed by a
:class:`~duet.services.devkit.wan.LinkShaper`. No TURN protocol: the
candidates are rewritten in the SDP, as an allocation would have placed
them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from duet.services.devkit.wan import LinkProfile, LinkShaper

__all__ = ["UdpPairRelay", "rewrite_candidates"]

Address = tuple[str, int]


def rewrite_candidates(sdp: str, relay: Address) -> tuple[str, Address]:
    """Every ``a=candidate`` line's address replaced by ``relay``; returns the new SDP and the real address.

    The client must have gathered exactly one address (host candidates on one
    interface, RTP and RTCP muxed, as the benchmark's clients do); ValueError otherwise.
    """
    real: set[Address] = set()
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 8 or parts[2].lower() != "udp":
                raise ValueError(f"unexpected candidate line {line!r}")
            real.add((parts[4], int(parts[5])))
            parts[4], parts[5] = relay[0], str(relay[1])
            line = " ".join(parts)
        lines.append(line)
    if len(real) != 1:
        raise ValueError(f"expected the client to gather one address, found {sorted(real)}")
    return "\r\n".join(lines) + "\r\n", real.pop()


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # asyncio's own class is no DatagramTransport subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data)


class UdpPairRelay:
    """Two loopback sockets relaying between clients a and b, each direction through its own delay."""

    def __init__(self, a_to_b: LinkProfile, b_to_a: LinkProfile) -> None:
        self._profiles = (a_to_b, b_to_a)
        self.real_a: Address | None = None
        self.real_b: Address | None = None
        self._for_a: _Socket | None = None  # b sends here; the relay forwards to a
        self._for_b: _Socket | None = None
        self._shapers: list[LinkShaper] = []
        self.relayed = 0
        self.dropped_unknown = 0  # arrived before the destination's address was known

    async def start(self) -> tuple[Address, Address]:
        """Open the sockets; returns (a's address as b must see it, b's address as a must see it)."""
        loop = asyncio.get_running_loop()
        a_to_b, b_to_a = self._profiles
        to_b = LinkShaper(a_to_b, self._send_to_b, salt="relay/a>b")
        to_a = LinkShaper(b_to_a, self._send_to_a, salt="relay/b>a")
        self._shapers = [to_b, to_a]
        transport, self._for_a = await loop.create_datagram_endpoint(
            lambda: _Socket(lambda data: self._submit(to_a, data, self.real_a)), local_addr=("127.0.0.1", 0)
        )
        self._for_a.transport = transport
        transport, self._for_b = await loop.create_datagram_endpoint(
            lambda: _Socket(lambda data: self._submit(to_b, data, self.real_b)), local_addr=("127.0.0.1", 0)
        )
        self._for_b.transport = transport
        return self._local(self._for_a), self._local(self._for_b)

    @staticmethod
    def _local(sock: _Socket) -> Address:
        assert sock.transport is not None
        host, port = sock.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def _submit(self, shaper: LinkShaper, data: bytes, dest: Address | None) -> None:
        if dest is None:
            self.dropped_unknown += 1
            return
        shaper.submit(data, dest)

    def _send_to_a(self, data: bytes, addr: Address) -> None:
        # From b's relay socket: a sees the packet come from where it was told b is.
        if self._for_b is not None and self._for_b.transport is not None:
            self.relayed += 1
            self._for_b.transport.sendto(data, addr)

    def _send_to_b(self, data: bytes, addr: Address) -> None:
        if self._for_a is not None and self._for_a.transport is not None:
            self.relayed += 1
            self._for_a.transport.sendto(data, addr)

    def close(self) -> None:
        for shaper in self._shapers:
            shaper.close()
        for sock in (self._for_a, self._for_b):
            if sock is not None and sock.transport is not None:
                sock.transport.close()
