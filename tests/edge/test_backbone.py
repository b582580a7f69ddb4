"""Backbone UDP endpoints: delivery, hop-by-hop relaying by route table, and drops."""

from __future__ import annotations

import asyncio

import pytest

from duet.edge.backbone import Backbone, RouteEntry, parse_address
from duet.edge.backbone_wire import BackboneHeader, PacketType, StreamKind

KEY = b"k" * 32


async def start(number: int, delivered: list[tuple[int, bytes]]) -> tuple[Backbone, tuple[str, int]]:
    bb = Backbone(number, KEY, lambda h, p: delivered.append((h.src_edge, bytes(p))))
    return bb, await bb.start("127.0.0.1")


def header(dest: int) -> BackboneHeader:
    return BackboneHeader(
        ptype=PacketType.MEDIA, dest_edge=dest, src_edge=0, bridge_id=9, side=1, kind=StreamKind.VIDEO, ttl=0
    )


async def wait_for(cond, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async def loop() -> None:
        while not cond():  # noqa: ASYNC110 - polls a plain counter, nothing to wait on
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), timeout)


async def test_packets_follow_next_hops_through_a_relay() -> None:
    got: dict[int, list[tuple[int, bytes]]] = {1: [], 2: [], 3: []}
    b1, a1 = await start(1, got[1])
    b2, a2 = await start(2, got[2])
    b3, a3 = await start(3, got[3])
    try:
        # 1 reaches 3 through 2 (as a least-latency path would route it)
        b1.routes.replace(1, [RouteEntry("e3", 3, "e2", a2, 200.0), RouteEntry("e2", 2, "e2", a2, 100.0)])
        b2.routes.replace(1, [RouteEntry("e3", 3, "e3", a3, 100.0), RouteEntry("e1", 1, "e1", a1, 100.0)])
        assert b1.send(header(3), b"\x80" * 20 + b"media")
        await wait_for(lambda: got[3])
        assert got[3] == [(1, b"\x80" * 20 + b"media")]
        assert got[2] == [] and b2.counters.packets_relayed == 1
    finally:
        for b in (b1, b2, b3):
            b.close()


async def test_no_route_and_bad_datagrams_are_dropped_and_counted() -> None:
    got: list[tuple[int, bytes]] = []
    b1, a1 = await start(1, got)
    b2, _ = await start(2, [])
    try:
        assert not b1.send(header(7), b"x")
        assert b1.counters.dropped == {"no route": 1}
        b2.routes.replace(1, [RouteEntry("e1", 1, "e1", a1, 1.0)])
        other_key = Backbone(2, b"another cluster", lambda h, p: None)
        other_key.routes.replace(1, [RouteEntry("e1", 1, "e1", a1, 1.0)])
        await other_key.start("127.0.0.1")
        other_key.send(header(1), b"forged")
        await wait_for(lambda: b1.counters.dropped.get("bad datagram: tag"))
        assert got == []
        other_key.close()
    finally:
        b1.close()
        b2.close()


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_address("[::1]:7") == ("::1", 7)
    for bad in ("127.0.0.1", ":5", "h:0", "h:99999", "h:x"):
        with pytest.raises(ValueError, match="host:port"):
            parse_address(bad)
