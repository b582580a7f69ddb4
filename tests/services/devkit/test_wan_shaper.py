"""WAN emulation layer: delay, jitter, loss and order on real loopback UDP and on the event loop."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from duet.edge.backbone import Backbone
from duet.routing.topology import default_topology
from duet.services.devkit.wan import (
    EmulatedDatagramTransport,
    LinkProfile,
    LinkShaper,
    WanConfig,
    backbone_from_topology,
)


async def _shape(profile: LinkProfile, n: int, spacing_s: float = 0.0) -> tuple[list[tuple[int, float]], LinkShaper]:
    loop = asyncio.get_running_loop()
    got: list[tuple[int, float]] = []
    shaper = LinkShaper(profile, lambda data, _addr: got.append((int.from_bytes(data, "big"), loop.time())))
    sent_at: dict[int, float] = {}
    for i in range(n):
        sent_at[i] = loop.time()
        shaper.submit(i.to_bytes(4, "big"), ("127.0.0.1", 9))
        if spacing_s:
            await asyncio.sleep(spacing_s)
    # Every profile here holds a datagram for well under 0.2 s.
    await asyncio.sleep(0.2)
    assert shaper.held == 0
    return [(i, t - sent_at[i]) for i, t in got], shaper


async def test_delay_within_tolerance_and_order_kept() -> None:
    arrivals, shaper = await _shape(LinkProfile(delay_ms=40), 50, spacing_s=0.001)
    assert [i for i, _ in arrivals] == list(range(50))
    lags = [lag for _, lag in arrivals]
    assert min(lags) >= 0.040
    assert max(lags) < 0.040 + 0.030  # loaded 2-core machine: generous upper bound
    assert shaper.counters.delayed == 50 and shaper.counters.delivered == 50 and shaper.counters.dropped == 0


async def test_jitter_without_reorder_keeps_order_with_reorder_it_may_not() -> None:
    jittery = LinkProfile(delay_ms=20, jitter_ms=15, seed=3)
    arrivals, _ = await _shape(jittery, 200)
    assert [i for i, _ in arrivals] == list(range(200))  # default: jitter never reorders
    arrivals, _ = await _shape(LinkProfile(delay_ms=20, jitter_ms=15, seed=3, reorder=True), 200)
    order = [i for i, _ in arrivals]
    assert sorted(order) == list(range(200)) and order != list(range(200))
    lags = [lag for _, lag in arrivals]
    assert min(lags) >= 0.005 and max(lags) < 0.035 + 0.030


async def test_loss_rate_within_statistical_bounds_and_repeatable() -> None:
    n, p = 4000, 0.05
    arrivals, shaper = await _shape(LinkProfile(loss=p, seed=11), n)
    dropped = shaper.counters.dropped
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(dropped - n * p) < 4 * sigma, dropped
    assert len(arrivals) == n - dropped == shaper.counters.delivered
    again, _ = await _shape(LinkProfile(loss=p, seed=11), n)
    assert [i for i, _ in again] == [i for i, _ in arrivals]  # same seed, same losses
    other, _ = await _shape(LinkProfile(loss=p, seed=12), n)
    assert [i for i, _ in other] != [i for i, _ in arrivals]


async def test_close_discards_what_is_held() -> None:
    got: list[bytes] = []
    shaper = LinkShaper(LinkProfile(delay_ms=50), lambda d, _a: got.append(d))
    for _ in range(5):
        shaper.submit(b"x", ("127.0.0.1", 9))
    shaper.close()
    await asyncio.sleep(0.1)
    assert got == [] and shaper.counters.discarded == 5 and shaper.held == 0


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, float]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, asyncio.get_running_loop().time()))


async def test_transport_shapes_per_destination_over_real_udp() -> None:
    loop = asyncio.get_running_loop()
    slow_t, slow = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    fast_t, fast = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    send_t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    slow_addr = slow_t.get_extra_info("sockname")
    emulated = EmulatedDatagramTransport(send_t, lambda addr: LinkProfile(delay_ms=60) if addr == slow_addr else None)
    try:
        start = loop.time()
        emulated.sendto(b"slow", slow_addr)
        emulated.sendto(b"fast", fast_t.get_extra_info("sockname"))
        await asyncio.sleep(0.15)
        assert [d for d, _ in slow.got] == [b"slow"] and [d for d, _ in fast.got] == [b"fast"]
        assert slow.got[0][1] - start >= 0.060
        assert fast.got[0][1] - start < 0.030
        assert emulated.links.counters().delayed == 1  # the unshaped destination has no link at all
        assert emulated.get_extra_info("sockname") == send_t.get_extra_info("sockname")
    finally:
        emulated.close()
        slow_t.close()
        fast_t.close()
    assert send_t.is_closing()


async def test_off_means_nothing_installed() -> None:
    backbone = Backbone(1, b"k", lambda h, p: None)
    await backbone.start("127.0.0.1")
    try:
        plain = backbone._transport
        assert type(plain).__name__ == "_SelectorDatagramTransport"
        from duet.edge.relay import EdgeRelay
        from duet.services.devkit.wan.edge import emulate_edge

        relay = EdgeRelay("fra-1", 1, b"k")
        await relay.start("127.0.0.1")
        try:
            original_attach = relay.attach_leg
            assert emulate_edge(relay, WanConfig()) is None
            # A config for other edges installs nothing here either.
            assert emulate_edge(relay, WanConfig(backbone={("vir-1", "sin-1"): LinkProfile(delay_ms=5)})) is None
            assert type(relay.backbone._transport).__name__ == "_SelectorDatagramTransport"
            assert relay.attach_leg == original_attach
        finally:
            await relay.stop()
    finally:
        backbone.close()


def test_profile_validation_in_words() -> None:
    with pytest.raises(ValueError, match="loss is a probability"):
        LinkProfile(loss=1.5)
    with pytest.raises(ValueError, match="delay_ms must be a finite number"):
        LinkProfile(delay_ms=-1)
    with pytest.raises(ValueError, match="unknown keys"):
        LinkProfile.from_dict({"delay": 5}, "x")
    assert not LinkProfile().active and LinkProfile(loss=0.01).active


def test_backbone_from_topology_halves_rtts() -> None:
    topo = default_topology()
    profiles = backbone_from_topology(topo, jitter_ms=1.0)
    link = topo.link("fra-1", "vir-1")
    assert link is not None
    assert profiles[("fra-1", "vir-1")].delay_ms == profiles[("vir-1", "fra-1")].delay_ms == link.rtt_ms / 2
    assert len(profiles) == 2 * len(topo.links)
    assert profiles[("fra-1", "vir-1")].jitter_ms == 1.0


def test_config_from_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert not WanConfig.from_env({}).enabled
    doc = {
        "backbone": {"topology": "default", "links": {"fra-1>vir-1": {"delay_ms": 100}}},
        "legs": True,
        "sessions": {"s-7": {"delay_ms": 15, "loss": 0.05, "seed": 1}},
    }
    config = WanConfig.from_env({"DUET_WAN": json.dumps(doc)})
    assert config.backbone_profile("fra-1", "vir-1") == LinkProfile(delay_ms=100)
    assert config.backbone_profile("vir-1", "fra-1") == LinkProfile(
        delay_ms=default_topology().link("fra-1", "vir-1").rtt_ms / 2  # type: ignore[union-attr]
    )
    assert config.leg_profile("anyone") == LinkProfile(delay_ms=15)
    assert config.leg_profile("s-7") == LinkProfile(delay_ms=15, loss=0.05, seed=1)
    path = tmp_path / "wan.json"
    path.write_text(json.dumps({"legs": {"delay_ms": 30}}))
    assert WanConfig.from_env({"DUET_WAN": str(path)}).leg_profile("x") == LinkProfile(delay_ms=30)
    with pytest.raises(ValueError, match="cannot read that file"):
        WanConfig.from_env({"DUET_WAN": str(tmp_path / "missing.json")})
    with pytest.raises(ValueError, match="not valid JSON"):
        WanConfig.from_env({"DUET_WAN": "{nope"})
    with pytest.raises(ValueError, match="from>to"):
        WanConfig.from_dict({"backbone": {"links": {"fra-1": {}}}})
