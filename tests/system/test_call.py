"""The whole system with real parts: PostgreSQL, routing, matchmaker and three edge
processes over gRPC/TCP and UDP on loopback, and real aiortc clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.client import MatchPreferences
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import edge_pb2, edge_pb2_grpc, matchmaker_pb2, matchmaker_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

# first_packet_at_edge is not ordered against bridged: an edge forwards as soon as
# its own side is bridged, before the matchmaker has both acknowledgements.
STAGE_ORDER = ("queued", "matched", "route_picked", "bridged", "first_frame")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


async def test_two_clients_in_different_regions_see_each_other(cluster: ClusterInfo, database_url: str) -> None:
    ana = synthetic_client(
        cluster.matchmaker,
        "it-ana",
        "Ana",
        tag=4242,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("it-ana"),
    )
    ben = synthetic_client(
        cluster.matchmaker,
        "it-ben",
        "Ben",
        tag=1717,
        client_ip=DEMO_CLIENT_IPS["Virginia"],
        token=cluster.user_tokens("it-ben"),
    )
    try:
        await asyncio.gather(ana.connect(), ben.connect())
        # geoip put them on different edges, so the call crosses the backbone
        assert ana.edge is not None and ben.edge is not None
        assert (ana.edge.edge_id, ben.edge.edge_id) == ("fra-1", "vir-1")
        ra, rb = await asyncio.gather(ana.find_partner(), ben.find_partner())
        # The edge's figures for ana's side: ben's video went out. (Whether ana's keyframe was cached
        # in time depends on how soon after connecting the match came: the edge tests check the cache.)
        async with grpc.aio.insecure_channel(cluster.edges["fra-1"]) as channel:
            stats = await edge_pb2_grpc.EdgeControlStub(channel).GetStats(
                edge_pb2.GetStatsRequest(), metadata=bearer_metadata(cluster.service_token(Role.OPS_READ, "test"))
            )
        side = next(b for b in stats.bridges if b.leg_id == ana.leg_id)
        assert side.packets_out > 0 and side.packets_in > 0 and side.first_packet_at_edge > side.bridged
        # The same side in fra-1's Prometheus metrics (duet edge --metrics-port, given by the cluster).
        async with aiohttp.ClientSession() as http, http.get(cluster.edge_metrics["fra-1"]) as response:
            scraped = await response.text()
        side_labels = {"edge": "fra-1", "bridge_id": str(side.bridge_id), "side": str(side.side), "peer_edge": "vir-1"}
        (to_client,) = [
            s.value
            for family in text_string_to_metric_families(scraped)
            for s in family.samples
            if s.name == "duet_edge_bridge_to_client_packets_total" and s.labels == side_labels
        ]
        assert to_client >= side.packets_out  # scraped after GetStats: the counter only grows
    finally:
        await asyncio.gather(ana.leave(), ben.leave())

    assert ra.call_id == rb.call_id
    # each decoded the other's own picture: the tag drawn into the sender's frames
    assert rb.first_marker is not None and rb.first_marker.tag == 4242
    assert ra.first_marker is not None and ra.first_marker.tag == 1717
    assert ra.route == ["fra-1", "vir-1"] and rb.route == ["vir-1", "fra-1"]
    assert ra.connect_ms is not None and ra.connect_ms > 0

    # the call record, with every stage measured, is in PostgreSQL
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM calls WHERE call_id = $1", ra.call_id)
    finally:
        await conn.close()
    assert row is not None
    assert {row["user_a"], row["user_b"]} == {"it-ana", "it-ben"}

    async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
        record = await matchmaker_pb2_grpc.MatchmakerStub(ch).GetCall(
            matchmaker_pb2.GetCallRequest(call_id=ra.call_id), metadata=bearer_metadata(cluster.user_token("it-ana"))
        )
    for side in (record.a, record.b):
        st = side.stages
        assert all(getattr(st, f.name) > 0 for f in st.DESCRIPTOR.fields), f"{side.user_id}: missing stage in {st}"
        values = [getattr(st, name) for name in STAGE_ORDER]
        assert values == sorted(values), f"{side.user_id}: stages out of order: {st}"
        # The route is asked for while the edges bridge, so media may reach the edge before it returns.
        assert st.matched <= st.first_packet_at_edge <= st.first_frame
        assert st.session_open <= st.edge_assigned <= st.leg_connected <= st.queued + 1
        assert side.connect_ms == pytest.approx(st.first_frame - st.matched)
    assert record.state in ("connected", "ended")


async def test_next_rebridges_warm_legs_without_a_new_peer_connection(cluster: ClusterInfo) -> None:
    users = [
        synthetic_client(
            cluster.matchmaker,
            f"it-next-{i}",
            f"N{i}",
            tag=300 + i,
            client_ip=DEMO_CLIENT_IPS[region],
            token=cluster.user_tokens(f"it-next-{i}"),
        )
        for i, region in enumerate(("Frankfurt", "Singapore", "Virginia"))
    ]
    u0, u1, u2 = users
    try:
        await asyncio.gather(*(u.connect() for u in users))
        legs = [u.leg_id for u in users]
        first, _ = await asyncio.gather(u0.find_partner(), u1.find_partner())
        assert first.first_marker is not None and first.first_marker.tag == 301
        # u0 presses next while u2 waits: u0 gets u2 on the same leg
        second, third = await asyncio.gather(u0.next(), u2.find_partner())
        assert second.first_marker is not None and second.first_marker.tag == 302
        assert third.first_marker is not None and third.first_marker.tag == 300
        assert second.call_id != first.call_id
        assert [u.leg_id for u in users] == legs
    finally:
        await asyncio.gather(*(u.leave() for u in users))


async def test_h264_only_clients_meet_each_other_and_never_a_client_they_cannot_decode(cluster: ClusterInfo) -> None:
    # ana offers H.264 only, so she sends it and decodes nothing else; ben offers both and
    # sends VP8, which ana cannot decode; cleo offers H.264 only, across the backbone.
    ana = synthetic_client(
        cluster.matchmaker,
        "it-h264-ana",
        "Ana",
        tag=511,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        video_codecs=["H264"],
        token=cluster.user_tokens("it-h264-ana"),
    )
    ben = synthetic_client(
        cluster.matchmaker,
        "it-h264-ben",
        "Ben",
        tag=512,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("it-h264-ben"),
    )
    cleo = synthetic_client(
        cluster.matchmaker,
        "it-h264-cleo",
        "Cleo",
        tag=513,
        client_ip=DEMO_CLIENT_IPS["Singapore"],
        video_codecs=["H264"],
        token=cluster.user_tokens("it-h264-cleo"),
    )
    try:
        await asyncio.gather(ana.connect(), ben.connect(), cleo.connect())
        waiting = [asyncio.create_task(ana.find_partner()), asyncio.create_task(ben.find_partner())]
        done, _ = await asyncio.wait(waiting, timeout=1.5)
        assert not done, "a client was matched with a partner it cannot exchange video with"
        ra, rc = await asyncio.gather(waiting[0], cleo.find_partner())
        assert ra.call_id == rc.call_id and ra.route == ["fra-1", "sin-1"]
        assert ra.first_marker is not None and ra.first_marker.tag == 513  # H.264 decoded, marker intact
        assert rc.first_marker is not None and rc.first_marker.tag == 511
        assert not waiting[1].done()  # ben still waits: nobody he can talk to came
    finally:
        await asyncio.gather(ana.leave(), ben.leave(), cleo.leave())
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


async def test_preferences_profile_and_a_stored_block_across_the_system(
    cluster: ClusterInfo, database_url: str
) -> None:
    ana = synthetic_client(
        cluster.matchmaker,
        "pref-ana",
        "Ana",
        tag=5151,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("pref-ana"),
        preferences=MatchPreferences(languages=("pt",), interests=("music", "film")),
    )
    ben = synthetic_client(
        cluster.matchmaker,
        "pref-ben",
        "Ben",
        tag=5252,
        client_ip=DEMO_CLIENT_IPS["Singapore"],
        token=cluster.user_tokens("pref-ben"),
        preferences=MatchPreferences(languages=("en", "pt"), interests=("music", "chess")),
    )
    try:
        await asyncio.gather(ana.connect(), ben.connect())
        await asyncio.gather(ana.find_partner(), ben.find_partner())
        assert ana.last_match is not None and ben.last_match is not None
        profile = ana.last_match.partner
        assert (profile.display_name, profile.region) == ("Ben", "Singapore")
        assert list(profile.shared_interests) == ["music"] and list(profile.languages) == ["en", "pt"]
        assert ana.last_match.predicted_connect_ms == pytest.approx(ana.last_match.route_rtt_ms / 2 + 33.3)
        await ana.block()  # returns once the block is stored; the call ends for both
        for _ in range(100):
            if not ben.in_call and not ana.in_call:
                break
            await asyncio.sleep(0.05)
        assert not ben.in_call and not ana.in_call
        async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
            record = await matchmaker_pb2_grpc.MatchmakerStub(ch).GetCall(
                matchmaker_pb2.GetCallRequest(call_id=ana.call_id),
                metadata=bearer_metadata(cluster.user_token("pref-ana")),
            )
        assert (record.state, record.end_reason) == ("ended", "blocked")
    finally:
        await asyncio.gather(ana.leave(), ben.leave())
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT blocker, blocked, call_id FROM blocks WHERE blocker = 'pref-ana'")
    finally:
        await conn.close()
    assert [(r["blocker"], r["blocked"], r["call_id"]) for r in rows] == [("pref-ana", "pref-ben", ana.call_id)]
