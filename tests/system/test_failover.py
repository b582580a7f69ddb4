"""Failover with real processes: a backbone link failed mid-call, a transit edge killed mid-call,
and a call's own edge process killed.

The cluster is the local one (PostgreSQL, routing, matchmaker, three edge
processes); clients are the SDK with synthetic cameras whose frames carry
their sender's tag.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.client import DuetClient
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import routing_pb2, routing_pb2_grpc

pytestmark = pytest.mark.slow


class FrameClock:
    """When each client's decoder produced frames: polls its counter every 5 ms."""

    def __init__(self, clients: list[DuetClient]) -> None:
        self.clients = clients
        self.arrivals: dict[str, list[float]] = {c.user_id: [] for c in clients}
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        seen = {c.user_id: c.frames_decoded for c in self.clients}
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            for c in self.clients:
                if c.frames_decoded != seen[c.user_id]:
                    seen[c.user_id] = c.frames_decoded
                    self.arrivals[c.user_id].append(now)

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def longest_gap(self, user_id: str, start: float, end: float) -> float:
        times = [t for t in self.arrivals[user_id] if start <= t <= end]
        assert len(times) > 10, f"{user_id} decoded almost nothing between the marks"
        return max(b - a for a, b in zip([start, *times], [*times, end], strict=True))


def write_atomically(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


@pytest.fixture
async def wan_cluster(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ClusterInfo, Path]]:
    wan = tmp_path / "wan.json"
    write_atomically(wan, {"backbone": {"topology": "default"}})
    monkeypatch.setenv("DUET_WAN", str(wan))
    async with LocalCluster(state_dir=tmp_path / "state", database=database_url) as info:
        yield info, wan


async def test_a_backbone_link_failed_mid_call_resumes_over_the_alternate_path_within_1_s(
    wan_cluster: tuple[ClusterInfo, Path],
) -> None:
    cluster, wan = wan_cluster
    ana = synthetic_client(
        cluster.matchmaker, "fo-ana", "Ana", tag=3101, client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("fo-ana"),
    )  # fmt: skip
    ben = synthetic_client(
        cluster.matchmaker, "fo-ben", "Ben", tag=3202, client_ip=DEMO_CLIENT_IPS["Virginia"],
        token=cluster.user_tokens("fo-ben"),
    )  # fmt: skip
    frames = FrameClock([ana, ben])
    try:
        await asyncio.gather(ana.connect(), ben.connect())
        ra, rb = await asyncio.gather(ana.find_partner(), ben.find_partner())
        assert ra.route == ["fra-1", "vir-1"] and rb.route == ["vir-1", "fra-1"]
        frames.start()
        await asyncio.sleep(2.0)  # a steady call, and steady probe readings
        cut = time.monotonic()
        write_atomically(
            wan,
            {
                "backbone": {
                    "topology": "default",
                    "links": {"fra-1>vir-1": {"loss": 1.0}, "vir-1>fra-1": {"loss": 1.0}},
                }
            },
        )
        await asyncio.sleep(4.0)
        end = time.monotonic()
        await frames.stop()
        gaps = {u: frames.longest_gap(u, cut, end) for u in ("fo-ana", "fo-ben")}
        print("longest video gap after the link failed:", {u: f"{g * 1000:.0f} ms" for u, g in gaps.items()})
        # The file is applied within 0.1 s of the write: the gap counts from there at the latest.
        assert all(g < 1.0 for g in gaps.values()), gaps
        # Still the same call, now through sin-1: decoding went on for the last seconds.
        assert ana.in_call and ben.in_call
        assert all(frames.arrivals[u][-1] > end - 0.2 for u in ("fo-ana", "fo-ben"))
        # fra-1's own view of its links, as it serves it to Prometheus.
        async with aiohttp.ClientSession() as http, http.get(cluster.edge_metrics["fra-1"]) as reply:
            text = await reply.text()
        reachable = {
            s.labels["peer"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "duet_edge_link_reachable"
        }
        assert reachable == {"vir-1": 0.0, "sin-1": 1.0}
    finally:
        await asyncio.gather(ana.leave(), ben.leave())


# The default topology's delays, except that vir-1's links are fast (20 ms each way): once the
# probes have measured them, a Frankfurt <-> Singapore call goes fra-1 > vir-1 > sin-1 (80 ms
# RTT) rather than straight (156 ms), and its alternate when vir-1 dies is the direct link.
TRANSIT_VIA_VIR = {
    "backbone": {
        "topology": "default",
        "links": {k: {"delay_ms": 20} for k in ("fra-1>vir-1", "vir-1>fra-1", "vir-1>sin-1", "sin-1>vir-1")},
    }
}


@pytest.fixture
async def transit_cluster(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LocalCluster]:
    wan = tmp_path / "wan.json"
    write_atomically(wan, TRANSIT_VIA_VIR)
    monkeypatch.setenv("DUET_WAN", str(wan))
    c = LocalCluster(state_dir=tmp_path / "state", database=database_url)
    async with c:
        yield c


async def test_a_transit_edge_killed_mid_call_is_routed_around_within_1_s(transit_cluster: LocalCluster) -> None:
    info = transit_cluster.info
    assert info is not None
    matchmaker = bearer_metadata(info.service_token(Role.MATCHMAKER))
    async with grpc.aio.insecure_channel(info.routing) as channel:
        routing = routing_pb2_grpc.RoutingStub(channel)

        async def path(a: str, b: str) -> list[str]:
            reply = await routing.PickRoute(
                routing_pb2.PickRouteRequest(from_edge_id=a, to_edge_id=b), metadata=matchmaker
            )
            return list(reply.path)

        deadline = time.monotonic() + 15
        while await path("fra-1", "sin-1") != ["fra-1", "vir-1", "sin-1"]:  # the probes measure vir-1's links
            assert time.monotonic() < deadline, "the route never moved onto the fast links through vir-1"
            await asyncio.sleep(0.2)

        ana = synthetic_client(
            info.matchmaker, "tr-ana", "Ana", tag=5101, client_ip=DEMO_CLIENT_IPS["Frankfurt"],
            token=info.user_tokens("tr-ana"),
        )  # fmt: skip
        cho = synthetic_client(
            info.matchmaker, "tr-cho", "Cho", tag=5303, client_ip=DEMO_CLIENT_IPS["Singapore"],
            token=info.user_tokens("tr-cho"),
        )  # fmt: skip
        frames = FrameClock([ana, cho])
        try:
            await asyncio.gather(ana.connect(), cho.connect())
            assert ana.edge is not None and ana.edge.edge_id == "fra-1"
            assert cho.edge is not None and cho.edge.edge_id == "sin-1"
            ra, rc = await asyncio.gather(ana.find_partner(), cho.find_partner())
            assert ra.route == ["fra-1", "vir-1", "sin-1"] and rc.route == ["sin-1", "vir-1", "fra-1"]
            frames.start()
            await asyncio.sleep(2.0)  # a steady call: its links through vir-1 are busy (probed every 0.1 s)

            edge = next(c for c in transit_cluster.children if c.name == "edge-vir-1")
            killed = time.monotonic()
            edge.proc.kill()  # SIGKILL: no goodbye to anyone
            await asyncio.sleep(4.0)
            end = time.monotonic()
            await frames.stop()
            gaps = {u: frames.longest_gap(u, killed, end) for u in ("tr-ana", "tr-cho")}
            print("longest video gap after the transit edge died:", {u: f"{g * 1000:.0f} ms" for u, g in gaps.items()})
            assert all(g < 1.0 for g in gaps.values()), gaps
            # The same call, now straight over fra-1 <-> sin-1; nobody's call ended.
            assert ana.in_call and cho.in_call
            assert all(frames.arrivals[u][-1] > end - 0.2 for u in ("tr-ana", "tr-cho"))
            assert await path("fra-1", "sin-1") == ["fra-1", "sin-1"]
        finally:
            await asyncio.gather(ana.leave(), cho.leave())


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalCluster]:
    monkeypatch.delenv("DUET_WAN", raising=False)
    c = LocalCluster(state_dir=tmp_path / "state", database=database_url)
    async with c:
        yield c


async def test_an_edge_killed_mid_call_its_clients_re_attach_elsewhere_and_talk_again(cluster: LocalCluster) -> None:
    info = cluster.info
    assert info is not None

    def client(user: str, tag: int, region: str) -> DuetClient:
        return synthetic_client(
            info.matchmaker, user, user, tag=tag, client_ip=DEMO_CLIENT_IPS[region], token=info.user_tokens(user)
        )

    ana, ben, cho = (
        client("ko-ana", 4101, "Frankfurt"),
        client("ko-ben", 4202, "Virginia"),
        client("ko-cho", 4303, "Singapore"),
    )
    try:
        await asyncio.gather(ana.connect(), ben.connect(), cho.connect())
        assert ben.edge is not None and ben.edge.edge_id == "vir-1"
        await asyncio.gather(ana.find_partner(), ben.find_partner())

        edge = next(c for c in cluster.children if c.name == "edge-vir-1")
        killed = time.monotonic()
        edge.proc.kill()  # SIGKILL: no goodbye to anyone
        ended = await asyncio.gather(ben.wait_call_ended(timeout=5), ana.wait_call_ended(timeout=5))
        lost_after = time.monotonic() - killed
        assert ended == ["edge_lost", "partner_edge_lost"]
        assert ben.edge_lost == "vir-1"
        assert lost_after < 3.5, lost_after  # 2 s of silence + the sweep + the matchmaker's stream

        # Ben's next find re-attaches first: a new leg on another edge, then the pool; he meets Cho.
        rb, rc = await asyncio.gather(ben.find_partner(), cho.find_partner())
        assert ben.reattached == 1 and ben.edge is not None and ben.edge.edge_id in ("fra-1", "sin-1")
        assert rb.partner_display_name == "ko-cho" and rc.partner_display_name == "ko-ben"
        assert rb.connect_ms is not None and rc.connect_ms is not None
        before = ben.frames_decoded, cho.frames_decoded
        await asyncio.sleep(1.0)
        assert ben.frames_decoded > before[0] + 10 and cho.frames_decoded > before[1] + 10
        print(f"edge killed -> EdgeLost at its client: {lost_after * 1000:.0f} ms; re-attached to {ben.edge.edge_id}")
    finally:
        await asyncio.gather(ana.leave(), ben.leave(), cho.leave())
