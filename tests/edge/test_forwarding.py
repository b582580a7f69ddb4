"""Edge forwarding with real aiortc peers: media crosses the backbone undecoded and the
receiver decodes the sender's own picture (the marker drawn into it)."""

from __future__ import annotations

import asyncio

import pytest

from duet.edge.backbone_wire import StreamKind
from tests.edge.harness import close_client, make_client, two_edges

pytestmark = pytest.mark.slow


async def test_call_across_the_backbone_decodes_partner_video() -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=11)
        b, leg_b = await make_client(e2, tag=22)
        try:
            e1.bridge(7, leg_a, 0, "vir-1")
            e2.bridge(7, leg_b, 1, "fra-1")
            got_b = await b.wait_for_tag(11)
            got_a = await a.wait_for_tag(22)
            assert got_b.tag == 11 and got_a.tag == 22
            # the counter advances: live video, not one stuck frame
            first = got_b.counter
            await asyncio.sleep(0.5)
            latest = [m.counter for m in b.markers if m.tag == 11][-1]
            assert latest > first
            s1 = e1.stats(7).bridges[0]
            assert s1.packets_in > 0 and s1.packets_out > 0 and s1.first_packet_at_edge_ms > s1.bridged_ms
            assert e1.stats().backbone_packets_out > 0 and e2.stats().backbone_packets_in > 0
            # audio flows too
            assert e2.legs[leg_b].packets_from_client(StreamKind.AUDIO) > 0
        finally:
            await close_client(a)
            await close_client(b)


async def test_next_rebridges_a_warm_leg_to_a_new_partner_on_the_same_edge() -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=1)
        b, leg_b = await make_client(e2, tag=2)
        c, leg_c = await make_client(e1, tag=3)
        try:
            e1.bridge(1, leg_a, 0, "vir-1")
            e2.bridge(1, leg_b, 1, "fra-1")
            await a.wait_for_tag(2)
            # "next": a leaves b for c (same edge), b is unbridged
            e2.unbridge(1, 1)
            e1.bridge(2, leg_a, 0, "fra-1")
            e1.bridge(2, leg_c, 1, "fra-1")
            got = await a.wait_for_tag(3)
            assert got.tag == 3
            await c.wait_for_tag(1)
            # b no longer receives anything from a
            before = len(b.markers)
            await asyncio.sleep(0.3)
            assert all(m.tag != 1 or i < before for i, m in enumerate(b.markers))
        finally:
            for cl in (a, b, c):
                await close_client(cl)


async def test_media_from_an_unbridged_leg_is_dropped_and_counted() -> None:
    async with two_edges() as (e1, _):
        a, _leg = await make_client(e1, tag=5)
        try:
            await asyncio.sleep(0.5)
            assert e1.stats().dropped.get("media from unbridged leg", 0) > 0
        finally:
            await close_client(a)


async def test_a_keyframe_that_beats_the_partner_edges_bridge_call_is_held_and_replayed() -> None:
    # The two edges install their sides concurrently; here fra-1's side goes in well before
    # vir-1's, so a's keyframe (asked for by fra-1 at once) reaches vir-1 before its side exists.
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=71)
        b, leg_b = await make_client(e2, tag=72)
        try:
            e1.bridge(8, leg_a, 0, "vir-1")
            await asyncio.sleep(0.25)
            side_b = e2.bridge(8, leg_b, 1, "fra-1")
            got = await b.wait_for_tag(71, timeout=5)
            assert got.tag == 71
            # b's first frame came from the held keyframe: vir-1 never had to ask fra-1 again,
            # and nothing it held was thrown away.
            assert side_b.keyframe_requests_relayed == 0
            assert "unknown bridge" not in e2.stats().dropped
        finally:
            await close_client(a)
            await close_client(b)


async def test_a_new_bridge_gets_the_partners_cached_keyframe_at_once() -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=81)
        b, leg_b = await make_client(e2, tag=82)
        c, leg_c = await make_client(e1, tag=83)
        try:
            await asyncio.sleep(0.5)  # warm legs waiting in the pool: their edges keep their keyframes
            # Both edges see the other side's cached video arrive as soon as they bridge.
            side_a = e1.bridge(9, leg_a, 0, "vir-1")
            side_b = e2.bridge(9, leg_b, 1, "fra-1")
            assert side_a.cache_packets_replayed > 0 and side_b.cache_packets_replayed > 0
            await b.wait_for_tag(81)
            await a.wait_for_tag(82)
            # The first partner packet left for b within a few ms of its bridge (no wait for a's encoder).
            assert side_b.first_packet_at_edge_ms - side_b.bridged_ms < 20, side_b
            # "next": a switches to c on the same edge; c's picture comes from fra-1's cache too.
            side_a2 = e1.bridge(10, leg_a, 0, "fra-1")
            e1.bridge(10, leg_c, 1, "fra-1")
            assert (await a.wait_for_tag(83)).tag == 83
            assert side_a2.first_packet_at_edge_ms - side_a2.bridged_ms < 20, side_a2
        finally:
            for client in (a, b, c):
                await close_client(client)


async def test_after_a_cached_keyframe_the_live_video_resumes_at_a_fresh_one(caplog: pytest.LogCaptureFixture) -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=91)
        b, leg_b = await make_client(e2, tag=92)
        try:
            await asyncio.sleep(0.5)
            assert e1.legs[leg_a].cached_keyframe()
            with caplog.at_level("WARNING", logger="aiortc.rtcrtpreceiver"):
                e1.bridge(11, leg_a, 0, "vir-1")
                side_b = e2.bridge(11, leg_b, 1, "fra-1")
                first = await b.wait_for_tag(91)
                await asyncio.sleep(0.6)
            # The cached picture first, then live frames after a's fresh keyframe; nothing b could not decode.
            counters = [m.counter for m in b.markers if m.tag == 91]
            assert counters[-1] > first.counter
            assert "failed to decode" not in caplog.text
            assert not side_b.awaiting_keyframe and not side_b.video_from_cache
        finally:
            await close_client(a)
            await close_client(b)
