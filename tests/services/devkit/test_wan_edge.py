"""WAN emulation in an edge: real aiortc clients against in-process EdgeRelays (tests/edge/harness.py)."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from duet.services.devkit.synthetic_media import FrameMarker, read_marker
from duet.services.devkit.wan import EmulatedDatagramTransport, LinkProfile, WanConfig
from duet.services.devkit.wan.edge import emulate_edge
from duet.services.devkit.wan.ice_internals import IceInternalsChanged, ice_protocols, leg_peer_connection
from tests.edge import harness
from tests.edge.harness import close_client, make_client, two_edges

pytestmark = pytest.mark.slow


class _TimedMarkers(list[FrameMarker]):
    """The harness appends every decoded marker here; keep when each frame counter was first seen."""

    def __init__(self) -> None:
        super().__init__()
        self.first_seen: dict[int, float] = {}

    def append(self, marker: FrameMarker) -> None:
        self.first_seen.setdefault(marker.counter, asyncio.get_running_loop().time())
        super().append(marker)


def _time_captures(pc: RTCPeerConnection) -> dict[int, float]:
    """Frame counter -> when the sender's camera produced it (wraps the video track's recv)."""
    track: Any = next(s.track for s in pc.getSenders() if s.track is not None and s.track.kind == "video")
    produced: dict[int, float] = {}
    original = track.recv

    async def recv() -> Any:
        frame = await original()
        marker = read_marker(frame)
        if marker is not None:
            produced.setdefault(marker.counter, asyncio.get_running_loop().time())
        return frame

    track.recv = recv
    return produced


def _latencies(produced: dict[int, float], seen: dict[int, float], after: float) -> list[float]:
    return [seen[c] - produced[c] for c in seen if c in produced and produced[c] >= after]


async def _video_packets_lost(client: harness.TestClient) -> int:
    report = await client.pc.getStats()
    return sum(s.packetsLost for s in report.values() if s.type == "inbound-rtp" and s.kind == "video")


async def test_backbone_delay_shows_up_as_added_latency_on_forwarded_media() -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=1)
        b, leg_b = await make_client(e2, tag=2)
        try:
            produced = _time_captures(a.pc)
            b.markers = seen = _TimedMarkers()
            e1.bridge(3, leg_a, 0, "vir-1")
            e2.bridge(3, leg_b, 1, "fra-1")
            await b.wait_for_tag(1)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.sleep(1.5)
            before = _latencies(produced, seen.first_seen, start)
            # Emulation goes in mid-call: the same call, before and after, on a busy machine.
            emulation = emulate_edge(e1, WanConfig(backbone={("fra-1", "vir-1"): LinkProfile(delay_ms=100)}))
            assert emulation is not None and isinstance(emulation.backbone, EmulatedDatagramTransport)
            switched = loop.time()
            await asyncio.sleep(2.0)
            after = _latencies(produced, seen.first_seen, switched + 0.3)
        finally:
            await close_client(a)
            await close_client(b)
    assert len(before) >= 15 and len(after) >= 15, (len(before), len(after))

    def low(latencies: list[float]) -> float:
        # The 20th percentile: what a frame takes when nothing else holds it up. A busy machine
        # (other tests on both cores) delays many frames by tens of ms more, which moves the median.
        return statistics.quantiles(latencies, n=5)[0]

    added_ms = (low(after) - low(before)) * 1000
    print(
        f"latency p20 {low(before) * 1000:.0f} ms -> {low(after) * 1000:.0f} ms; "
        f"median {statistics.median(before) * 1000:.0f} ms -> {statistics.median(after) * 1000:.0f} ms"
    )
    assert 70 <= added_ms <= 150, added_ms
    counters = emulation.backbone_counters()
    assert counters.delayed > 0 and counters.dropped == 0


async def _lossy_call(seconds: float) -> tuple[Any, str, int, set[int], set[int], dict[str, int]]:
    """A call across the backbone with 5 % loss each way on client B's leg only.

    Returns the leg emulation, B's leg id, the video packets B's receiver
    counted lost, the partner frames each side decoded over the whole call
    (``seconds`` from bridging), and both edges' loss-recovery counters.
    """
    async with two_edges() as (e1, e2):
        # Client B's session id in the harness is "session-2".
        emulation = emulate_edge(e2, WanConfig(sessions={"session-2": LinkProfile(delay_ms=15, loss=0.05, seed=5)}))
        assert emulation is not None and emulation.backbone is None
        a, leg_a = await make_client(e1, tag=1)
        b, leg_b = await make_client(e2, tag=2)
        try:
            assert list(emulation.legs) == [leg_b]
            # The hook is in place on every ICE socket of B's leg, and on no other leg.
            protocols = ice_protocols(leg_peer_connection(e2.legs[leg_b]))
            assert protocols and all(isinstance(p.transport, EmulatedDatagramTransport) for p in protocols)
            assert not any(
                isinstance(p.transport, EmulatedDatagramTransport)
                for p in ice_protocols(leg_peer_connection(e1.legs[leg_a]))
            )
            e1.bridge(4, leg_a, 0, "vir-1")
            e2.bridge(4, leg_b, 1, "fra-1")
            b.markers.clear()
            a.markers.clear()
            await asyncio.sleep(seconds)
            fresh_at_b = {m.counter for m in b.markers if m.tag == 1}
            fresh_at_a = {m.counter for m in a.markers if m.tag == 2}
            lost_at_b = await _video_packets_lost(b)
            recovery = {f"{e.edge_id} {k}": v for e in (e1, e2) for k, v in e.stats().recovery.items()}
        finally:
            await close_client(a)
            await close_client(b)
    return emulation.legs[leg_b], leg_b, lost_at_b, fresh_at_b, fresh_at_a, recovery


async def test_loss_on_one_leg_shows_in_the_counters_and_the_receivers_stats() -> None:
    leg, _, lost_at_b, _, _, _ = await _lossy_call(5.0)
    print(f"leg B sent {leg.sent()} received {leg.received()}; B's receiver counted {lost_at_b} video packets lost")
    assert leg.sent().dropped > 0 and leg.received().dropped > 0
    total = leg.sent().submitted + leg.received().submitted
    assert 0.02 < (leg.sent().dropped + leg.received().dropped) / total < 0.09
    # What the link dropped on the way to B, the edge resent on NACK: B's receiver ends up
    # missing fewer packets than were dropped (its own count of lost video packets).
    assert lost_at_b < leg.sent().dropped


async def test_a_call_keeps_decoding_with_5_percent_loss_on_one_leg() -> None:
    # Without loss recovery an aiortc receiver stopped decoding for good after its first lost
    # video packet (its jitter buffer waits for it): it kept decoding only once edges answered NACKs.
    _, _, _, fresh_at_b, fresh_at_a, recovery = await _lossy_call(6.0)
    print("loss recovery:", recovery, "frames decoded:", len(fresh_at_b), len(fresh_at_a))
    # ~180 frames were sent each way. Without repairs, each side stops at its first lost video
    # packet (~1.5 a second here), so it decodes a few dozen frames at most. With them, a stall
    # happens only when a repair or its NACK is itself lost: aiortc's receiver NACKs again only
    # when it sees a new gap (libwebrtc retries on a timer), so a stall lasts until the next loss,
    # usually well under a second. A third of the frames is far above the first and far below the
    # second; a window at the end of the call would measure only where the last lost repair fell.
    assert len(fresh_at_b) >= 60 and len(fresh_at_a) >= 60, (len(fresh_at_b), len(fresh_at_a))
    # B lost packets on its way down: its edge (vir-1) answered from what it had sent.
    assert recovery.get("vir-1 resent", 0) > 0
    # B's packets lost on their way up: A's edge (fra-1) did not hold them and asked upstream; B's
    # client answered its edge's NACK, and the repairs reached A as RTX.
    assert recovery.get("fra-1 asked upstream", 0) > 0 and recovery.get("vir-1 repaired by client", 0) > 0
    assert recovery.get("fra-1 repair passed on as rtx", 0) > 0


async def test_leg_hook_fails_loudly_when_aiortc_internals_move() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        assert ice_protocols(pc)  # gathered: one socket on loopback at least
        gatherer = pc.getTransceivers()[0].sender.transport.transport.iceGatherer
        del gatherer._connection
        with pytest.raises(IceInternalsChanged, match="aiortc/aioice changed"):
            ice_protocols(pc)
    finally:
        await pc.close()
    with pytest.raises(IceInternalsChanged, match="_pc"):
        leg_peer_connection(object())
