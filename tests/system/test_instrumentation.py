"""Connect-time instrumentation on the whole system: a client with a skewed clock, its stages
stored on the matchmaker's clock with the offset, the stage histograms on every service's
/metrics, and `duet calls` reading the records."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.client.stages import now_ms
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SKEW_MS = 4000.0  # ben's clock runs this far ahead of everyone else's


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def call_record(cluster: ClusterInfo) -> AsyncIterator[tuple[matchmaker_pb2.CallRecord, dict[str, float]]]:
    """One call between ana (Frankfurt, true clock) and ben (Virginia, clock SKEW_MS ahead),
    read back once both have reported; with ben's own (skewed) client stages. The call stays live."""
    ana = synthetic_client(
        cluster.matchmaker,
        "clk-ana",
        "Ana",
        tag=3131,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("clk-ana"),
    )
    ben = synthetic_client(
        cluster.matchmaker,
        "clk-ben",
        "Ben",
        tag=4141,
        client_ip=DEMO_CLIENT_IPS["Virginia"],
        token=cluster.user_tokens("clk-ben"),
        clock=lambda: now_ms() + SKEW_MS,
    )
    try:
        await asyncio.gather(ana.connect(), ben.connect())
        _, rb = await asyncio.gather(ana.find_partner(), ben.find_partner())
        assert ben.clock_probes_answered >= 1
        token = bearer_metadata(cluster.service_token(Role.OPS_READ, "test"))
        async with grpc.aio.insecure_channel(cluster.matchmaker) as channel:
            stub = matchmaker_pb2_grpc.MatchmakerStub(channel)
            deadline = time.monotonic() + 10
            while True:
                record = await stub.GetCall(matchmaker_pb2.GetCallRequest(call_id=rb.call_id), metadata=token)
                if record.state == "connected" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        assert record.state == "connected"
        yield record, rb.client_stages
    finally:
        await asyncio.gather(ana.leave(), ben.leave())


def side_of(record: matchmaker_pb2.CallRecord, user: str) -> matchmaker_pb2.CallSide:
    return record.a if record.a.user_id == user else record.b


async def test_a_skewed_clients_stages_are_stored_on_the_matchmakers_clock(
    call_record: tuple[matchmaker_pb2.CallRecord, dict[str, float]],
) -> None:
    record, ben_own = call_record
    ben, ana = side_of(record, "clk-ben"), side_of(record, "clk-ana")
    assert ben.clock_synced and ana.clock_synced
    # Loopback: the best of five probes has a round trip of a few ms at most.
    assert 0 <= ben.clock_uncertainty_ms < 50
    assert abs(ben.clock_offset_ms - SKEW_MS) <= ben.clock_uncertainty_ms + 1
    assert abs(ana.clock_offset_ms) <= ana.clock_uncertainty_ms + 1
    s = ben.stages
    # Each stored client stage is ben's own reading minus the measured offset ...
    for name in ("session_open", "edge_assigned", "leg_connected", "first_frame"):
        assert getattr(s, name) == pytest.approx(ben_own[name] - ben.clock_offset_ms, abs=0.01)
    # ... so they fall in order with the matchmaker's stages; on ben's clock first_frame would be 4 s late.
    assert s.session_open <= s.edge_assigned <= s.leg_connected <= s.queued + ben.clock_uncertainty_ms + 1
    assert s.matched < s.first_frame + ben.clock_uncertainty_ms + 1
    assert 0 < ben.connect_ms < 2000


async def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


async def test_stage_histograms_carry_the_calls_region_pair(
    cluster: ClusterInfo, call_record: tuple[matchmaker_pb2.CallRecord, dict[str, float]]
) -> None:
    mm = await scrape(cluster.matchmaker_metrics)
    counts = {
        (labels["stage"], labels["region_a"], labels["region_b"]): value
        for labels, value in mm["duet_matchmaker_stage_seconds_count"]
    }
    pair = {"Frankfurt", "Virginia"}
    for stage in ("route_picked", "bridged", "notified"):
        assert sum(v for (st, a, b), v in counts.items() if st == stage and {a, b} == pair) >= 1
    # One side's stages: region_a is the side that received.
    for stage in ("first_packet_at_edge", "first_frame"):
        assert counts.get((stage, "Virginia", "Frankfurt"), 0) >= 1
        assert counts.get((stage, "Frankfurt", "Virginia"), 0) >= 1
    # ben's first frame on the matchmaker's clock: well under its 4 s skew.
    (ben_sum,) = [
        v
        for labels, v in mm["duet_matchmaker_stage_seconds_sum"]
        if labels == {"stage": "first_frame", "region_a": "Virginia", "region_b": "Frankfurt"}
    ]
    assert ben_sum < 2.0 * counts[("first_frame", "Virginia", "Frankfurt")]
    waited = {labels["region"] for labels, _ in mm["duet_matchmaker_time_to_match_seconds_count"]}
    assert pair <= waited

    routing = await scrape(cluster.routing_metrics)
    picks = {(lb["method"], lb["outcome"]): v for lb, v in routing["duet_routing_pick_seconds_count"]}
    assert picks[("PickIngress", "ok")] >= 2 and picks[("PickRoute", "ok")] >= 1
    pushed = {lb["edge"]: v for lb, v in routing["duet_routing_route_pushes_total"]}
    assert set(cluster.edges) <= set(pushed) and min(pushed.values()) >= 1

    # The edges' figures for the live call: each side's peer is the other region's edge.
    fra = await scrape(cluster.edge_metrics["fra-1"])
    peers = {lb["peer_edge"] for lb, _ in fra["duet_edge_bridge_to_client_packets_total"]}
    assert "vir-1" in peers


async def duet(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "duet.services.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_duet_calls_shows_the_breakdown_and_refuses_what_it_should(
    cluster: ClusterInfo, call_record: tuple[matchmaker_pb2.CallRecord, dict[str, float]], tmp_path: Path
) -> None:
    record, _ = call_record
    env = {k: v for k, v in os.environ.items() if k not in ("DUET_OPS_TOKEN", "DUET_AUTH_SECRETS")}
    with_secrets = dict(env, DUET_AUTH_SECRETS=str(cluster.secrets_path))
    mm = ["--matchmaker", cluster.matchmaker]

    code, out, err = await duet("calls", *mm, "--limit", "5", env=with_secrets, cwd=tmp_path)
    assert code == 0, err
    assert f"call {record.call_id[:12]}" in out and f"route {' > '.join(record.route)}" in out
    ben_line = next(line for line in out.splitlines() if line.strip().startswith("clk-ben"))
    # The offset column, "+OFFSET +-UNCERTAINTY": the skew, within what the probes could tell.
    offset, uncertainty = re.search(r"([+-]\d+\.\d) \+-(\d+\.\d)", ben_line).groups()  # type: ignore[union-attr]
    assert abs(float(offset) - SKEW_MS) <= float(uncertainty) + 1, ben_line

    code, out, err = await duet("calls", *mm, "--user", "clk-ben", "--json", env=with_secrets, cwd=tmp_path)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all("clk-ben" in (r["a"]["userId"], r["b"]["userId"]) for r in rows)
    assert rows[0]["callId"] == record.call_id

    code, out, _ = await duet("calls", *mm, "--user", "nobody-here", env=with_secrets, cwd=tmp_path)
    assert code == 0 and out.strip() == "no calls recorded"

    for bad, words in (("--limit=0", "not a number of calls from 1 to 1000"), ("--user=a b", "is not a user id")):
        code, _, err = await duet("calls", *mm, bad, env=with_secrets, cwd=tmp_path)
        assert code == 2 and words in err

    # No token and no secrets to mint one from (a folder with no .duet/): refused in words.
    code, _, err = await duet("calls", *mm, env=env, cwd=tmp_path)
    assert code == 1 and "no ops token" in err and "--token" in err
    # A user's token may not list everyone's calls; a forged one proves nothing.
    user_token = cluster.user_token("clk-ana")
    code, _, err = await duet("calls", *mm, "--token", user_token, env=env, cwd=tmp_path)
    assert code == 1 and "not allowed" in err
    code, _, err = await duet("calls", *mm, "--token", "not-a-token", env=env, cwd=tmp_path)
    assert code == 1 and "not signed in" in err
    # Nothing listening there.
    code, _, err = await duet("calls", "--matchmaker", "127.0.0.1:1", env=with_secrets, cwd=tmp_path)
    assert code == 1 and "cannot reach the matchmaker at 127.0.0.1:1" in err


async def test_list_calls_needs_an_ops_read_token(cluster: ClusterInfo) -> None:
    async with grpc.aio.insecure_channel(cluster.matchmaker) as channel:
        stub = matchmaker_pb2_grpc.MatchmakerStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as none:
            await stub.ListCalls(matchmaker_pb2.ListCallsRequest())
        assert none.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for token in (cluster.user_token("clk-ana"), cluster.service_token(Role.MATCHMAKER)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListCalls(matchmaker_pb2.ListCallsRequest(), metadata=bearer_metadata(token))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ops = bearer_metadata(cluster.service_token(Role.OPS_READ, "test"))
        with pytest.raises(grpc.aio.AioRpcError) as big:
            await stub.ListCalls(matchmaker_pb2.ListCallsRequest(limit=5000), metadata=ops)
        assert big.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in (big.value.details() or "")
