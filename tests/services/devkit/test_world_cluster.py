"""The world under WAN emulation: 13 edge processes, one call across it, and every stage pays its distance.

A LocalCluster with all 13 shipped regions and ClusterEmulation (backbone,
last mile and control plane, matchmaker and routing in Frankfurt), one call
between Sydney and Johannesburg (the worst pair of the shipped RTTs).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from duet.routing.reference import reference_rtt_ms, region_sites
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.services.devkit.wan.cluster import ClusterEmulation

pytestmark = pytest.mark.slow

LAST_MILE_MS = 15.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def test_a_call_across_the_world_pays_control_backbone_and_last_miles(database_url: str, tmp_path: Path) -> None:
    emulation = ClusterEmulation(control_region="Frankfurt", last_mile_ms=LAST_MILE_MS)
    regions = list(region_sites())
    cluster = LocalCluster(state_dir=tmp_path, database=database_url, regions=regions, emulation=emulation)
    async with cluster as info:
        assert len(info.edges) == 13
        assert set(info.matchmaker_by_region) == set(regions)
        sydney = synthetic_client(
            info.matchmaker_for("Sydney"),
            "world-syd",
            "syd",
            tag=501,
            client_ip=DEMO_CLIENT_IPS["Sydney"],
            token=info.user_tokens("world-syd"),
        )
        joburg = synthetic_client(
            info.matchmaker_for("Johannesburg"),
            "world-jnb",
            "jnb",
            tag=502,
            client_ip=DEMO_CLIENT_IPS["Johannesburg"],
            token=info.user_tokens("world-jnb"),
        )
        try:
            await asyncio.gather(sydney.connect(), joburg.connect())
            assert sydney.edge is not None and sydney.edge.edge_id == "syd-1"
            assert joburg.edge is not None and joburg.edge.edge_id == "jnb-1"
            a, b = await asyncio.gather(sydney.find_partner(), joburg.find_partner())
        finally:
            await asyncio.gather(sydney.leave(), joburg.leave())

        control_syd = reference_rtt_ms("Frankfurt", "Sydney") / 2
        control_jnb = reference_rtt_ms("Frankfurt", "Johannesburg") / 2
        backbone = reference_rtt_ms("Sydney", "Johannesburg") / 2
        assert a.call_id == b.call_id and set(a.route) == {"syd-1", "jnb-1"}

        # The client's control path: Hello up and EdgeAssigned down through its region's proxy.
        opened = a.client_stages["edge_assigned"] - a.client_stages["session_open"]
        assert opened >= 2 * (control_syd + LAST_MILE_MS)
        # Bridge goes to both edges and both answer: the far edge's round trip at least.
        bridged = a.stages["bridged"] - a.stages["matched"]
        assert bridged >= 2 * max(control_syd, control_jnb)
        # Media: the Bridge reaching an edge, one backbone trip, the receiver's last mile.
        for result in (a, b):
            assert result.connect_ms is not None
            assert result.connect_ms >= min(control_syd, control_jnb) + backbone + LAST_MILE_MS
            assert result.connect_ms < 3000, result.stages  # sane, not a target: the machine is shared

        # Thirteen idle edges stay cheap on a 2-core machine.
        edges = [c.proc.pid for c in cluster.children if c.name.startswith("edge-")]
        before = sum(_cpu_seconds(pid) for pid in edges)
        await asyncio.sleep(2.0)
        idle_cores = (sum(_cpu_seconds(pid) for pid in edges) - before) / 2.0
        print(f"13 idle edges: {idle_cores:.3f} cores")
        assert idle_cores < 0.25, f"13 idle edges used {idle_cores:.2f} cores"
