"""make bench-connect: its model and relay pieces, and the --quick run's output (shape and sane figures, not targets)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiortc.mediastreams import MediaStreamError

from bench.connect.duet_calls import MAX_CALLS_PER_PAIR, SCHEDULE, DuetSample, schedule
from bench.connect.floor import pair_floor
from bench.connect.media_gate import GatedCamera, GatedMicrophone
from bench.connect.pairs import all_pairs, pair_path
from bench.connect.placement import placement_table, placements
from bench.connect.report import pair_figures, summary
from bench.connect.udp_relay import UdpPairRelay, rewrite_candidates
from bench.loop_lag import LoopLag
from duet.routing.reference import reference_rtt_ms
from duet.routing.topology import world_topology
from duet.services.devkit.synthetic_media import read_marker
from duet.services.devkit.wan import ControlPlane, LinkProfile

REPO_ROOT = Path(__file__).resolve().parents[2]

SUMMARY_KEYS = {
    "pairs",
    "calls",
    "worst_pair_p95_ms",
    "median_pair_p95_ms",
    "baseline_worst_pair_p95_ms",
    "speedup_worst",
    "worst_ratio_to_floor",
    "next_p95_ms",
    "next_floor_p95_ms",
    "stalled_calls",
    "same_region_pairs",
    "same_region_worst_p95_ms",
    "failed_calls",
}


def test_the_floor_is_the_connect_models_physical_part() -> None:
    floor = pair_floor(world_topology(), "Frankfurt", "Sydney", "Johannesburg", last_mile_ms=15)
    control = reference_rtt_ms("Frankfurt", "Sydney") / 2  # Sydney is the farther edge from Frankfurt
    backbone = reference_rtt_ms("Sydney", "Johannesburg") / 2  # the direct link is the least-cost route
    assert floor.total_ms == pytest.approx(control + backbone + 2 * 15 + floor.frame_interval_ms)
    assert 30 <= floor.frame_interval_ms <= 34
    assert floor.model_ms > floor.total_ms  # the model's processing allowance is left out of the floor
    with pytest.raises(ValueError, match="not in the topology"):
        pair_floor(world_topology(), "Atlantis", "Sydney", "Johannesburg", last_mile_ms=15)


def test_pair_paths_take_their_delays_from_the_topology() -> None:
    world = world_topology()
    control = ControlPlane("Frankfurt", world)
    path = pair_path(world, control, "Sydney", "Johannesburg", last_mile_ms=15)
    assert path.route[0] == "syd-1" and path.route[-1] == "jnb-1"
    assert path.route_rtt_ms <= reference_rtt_ms("Sydney", "Johannesburg")  # least-cost: direct or better
    floor = path.floor()
    assert floor.control_one_way_ms == reference_rtt_ms("Frankfurt", "Sydney") / 2  # Sydney is the farther edge
    assert floor.backbone_one_way_ms == path.route_rtt_ms / 2
    assert path.media_one_way_ms == 30 + path.route_rtt_ms / 2
    assert path.signalling_one_way_ms == pytest.approx(
        30 + (reference_rtt_ms("Frankfurt", "Sydney") + reference_rtt_ms("Frankfurt", "Johannesburg")) / 2
    )
    assert len(all_pairs(list("abcdefghijklm"), same_region=False)) == 78
    assert len(all_pairs(list("abcdefghijklm"), same_region=True)) == 91


def test_candidates_are_rewritten_to_the_relay() -> None:
    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
    )
    rewritten, real = rewrite_candidates(sdp, ("127.0.0.1", 5555))
    assert real == ("127.0.0.1", 40000)
    assert rewritten.count("127.0.0.1 5555 typ host") == 2 and "40000" not in rewritten
    with pytest.raises(ValueError, match="one address"):
        rewrite_candidates(sdp.replace("40000 typ host\r\nm=audio", "40001 typ host\r\nm=audio"), ("h", 1))


async def test_the_relay_delays_each_direction_and_hides_the_real_addresses() -> None:
    loop = asyncio.get_running_loop()
    got: dict[str, asyncio.Future[tuple[bytes, tuple[str, int], float]]] = {
        "a": loop.create_future(),
        "b": loop.create_future(),
    }

    class Client(asyncio.DatagramProtocol):
        def __init__(self, name: str) -> None:
            self.name = name

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got[self.name].done():
                got[self.name].set_result((data, addr, loop.time()))

    ta, _ = await loop.create_datagram_endpoint(lambda: Client("a"), local_addr=("127.0.0.1", 0))
    tb, _ = await loop.create_datagram_endpoint(lambda: Client("b"), local_addr=("127.0.0.1", 0))
    relay = UdpPairRelay(LinkProfile(delay_ms=60), LinkProfile(delay_ms=30))
    try:
        a_seen_at, b_seen_at = await relay.start()
        relay.real_a = ta.get_extra_info("sockname")[:2]
        relay.real_b = tb.get_extra_info("sockname")[:2]
        sent = loop.time()
        ta.sendto(b"to b", b_seen_at)
        tb.sendto(b"to a", a_seen_at)
        data_b, from_b, at_b = await asyncio.wait_for(got["b"], 2)
        data_a, from_a, at_a = await asyncio.wait_for(got["a"], 2)
        assert (data_b, from_b) == (b"to b", a_seen_at)  # b sees a at the relay address it was told
        assert (data_a, from_a) == (b"to a", b_seen_at)
        assert 0.060 <= at_b - sent < 0.060 + 0.040
        assert 0.030 <= at_a - sent < 0.030 + 0.040
    finally:
        relay.close()
        ta.close()
        tb.close()


@pytest.mark.slow
def test_quick_run_prints_sane_figures_a_heatmap_and_a_report(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--quick", "--database-url", database_url, "--state-dir", str(tmp_path / "state"), "--out-dir", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "bench.connect", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(summary) == SUMMARY_KEYS
    assert summary["pairs"] == 2 and summary["calls"] == 6 and summary["failed_calls"] == 0

    report = json.loads((out / "report.json").read_text())
    assert report["summary"] == summary
    by_pair = {tuple(p["pair"]): p for p in report["pairs"]}
    worst = by_pair[("Sydney", "Johannesburg")]
    assert len(worst["duet_ms"]) == 3 and len(worst["baseline_ms"]) == 1
    # Sane against the emulated world: no call beats the Bridge reaching an edge plus one backbone trip
    # and the receiver's last mile, and the end-to-end handshake needs several round trips of the path.
    lower = min(worst["floor"]["control_one_way_ms"], reference_rtt_ms("Frankfurt", "Johannesburg") / 2)
    assert min(worst["duet_ms"]) >= lower + worst["route_rtt_ms"] / 2 + 15
    assert summary["baseline_worst_pair_p95_ms"] > 2 * (worst["route_rtt_ms"] + 60)
    assert summary["worst_pair_p95_ms"] >= summary["median_pair_p95_ms"] > 0
    assert summary["speedup_worst"] == pytest.approx(
        summary["baseline_worst_pair_p95_ms"] / summary["worst_pair_p95_ms"], abs=0.01
    )
    assert summary["speedup_worst"] > 1
    assert 0.8 < summary["worst_ratio_to_floor"] < 10
    assert summary["next_p95_ms"] is not None and summary["next_p95_ms"] > 0
    assert [c["how"] for c in report["duet_calls"]].count("next") == 2
    assert (out / "connect_p95.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Sydney-Johannesburg" in run.stdout and "Physical floor per pair" in run.stdout


def test_the_schedule_meets_a_new_partner_every_call_and_starts_with_finds() -> None:
    for calls in range(1, MAX_CALLS_PER_PAIR + 1):
        plan = schedule(calls)
        assert len(plan) == calls
        pairings = [(i, j) for i, j, _ in plan]
        assert len(set(pairings)) == calls  # every call a new partner for both
        hows = [how for _, _, how in plan]
        finds = hows.count("find")
        assert hows[:finds] == ["find"] * finds and all(h == "next" for h in hows[finds:])
        # A "next" client has been in a call before (a warm leg that was bridged).
        for n, (i, j, how) in enumerate(plan):
            if how == "next":
                assert any(i == a for a, _, _ in plan[:n]) and any(j == b for _, b, _ in plan[:n])
    assert schedule(4) == SCHEDULE == ((0, 0, "find"), (1, 1, "find"), (0, 1, "next"), (1, 0, "next"))
    with pytest.raises(ValueError, match="1 to 16"):
        schedule(17)


def test_loop_lag_reports_the_worst_delay_within_a_call() -> None:
    lag = LoopLag()
    for at, late in ((1000.0, 1.0), (1010.0, 40.0), (1020.0, 2.0), (1100.0, 90.0)):
        lag.record(at, late)
    assert lag.worst_between(1000, 1020) == 40.0
    assert lag.worst_between(1015, 1050) == 2.0
    assert lag.worst_between(2000, 3000) == 0.0


async def test_gated_camera_and_microphone_yield_frames_only_while_open() -> None:
    camera = GatedCamera(tag=77)
    camera.open()
    first = await asyncio.wait_for(camera.recv(), 1)
    assert read_marker(first) is not None and read_marker(first).tag == 77
    camera.close()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(camera.recv(), 0.2)
    camera.open()
    after = await asyncio.wait_for(camera.recv(), 1)
    # Timestamps follow the wall clock across the closed spell: no burst of catch-up frames.
    assert after.pts - first.pts >= 0.2 * 90_000
    t0 = asyncio.get_running_loop().time()
    for _ in range(3):
        await camera.recv()
    assert asyncio.get_running_loop().time() - t0 >= 2.5 / 30
    camera.stop()

    mic = GatedMicrophone()
    mic.open()
    a = await asyncio.wait_for(mic.recv(), 1)
    b = await asyncio.wait_for(mic.recv(), 1)
    assert a.samples == 960 and (b.pts - a.pts) == 960  # 20 ms apart, whole frames
    mic.close()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(mic.recv(), 0.1)
    mic.stop()


def test_the_summary_counts_cross_region_pairs_and_reports_same_region_apart() -> None:
    world = world_topology()
    control = ControlPlane("Frankfurt", world)
    far = pair_path(world, control, "Sydney", "Johannesburg", last_mile_ms=15)
    near = pair_path(world, control, "Frankfurt", "London", last_mile_ms=15)
    same = pair_path(world, control, "Tokyo", "Tokyo", last_mile_ms=15)
    duet = [
        DuetSample(far.key, "find", 400.0),
        DuetSample(far.key, "next", 420.0, loop_lag_ms=120.0),
        DuetSample(near.key, "find", 90.0),
        DuetSample(near.key, "next", 95.0),
        DuetSample(same.key, "find", 70.0),
        DuetSample(same.key, "next", 900.0),  # slow, but not a pair of two regions
    ]
    result = summary(pair_figures([far, near, same], duet, []), duet, [])
    assert result["pairs"] == 2 and result["calls"] == 4
    assert result["worst_pair_p95_ms"] == pytest.approx(419.0)  # inclusive p95 of 400 and 420
    assert result["next_p95_ms"] == pytest.approx(95 + 0.95 * (420 - 95), abs=0.1)
    assert result["next_floor_p95_ms"] == pytest.approx(
        near.floor().total_ms + 0.95 * (far.floor().total_ms - near.floor().total_ms), abs=0.1
    )
    assert result["stalled_calls"] == 1
    assert result["same_region_pairs"] == 1 and result["same_region_worst_p95_ms"] == pytest.approx(858.5)
    assert result["failed_calls"] == 0


async def test_stopping_a_closed_gated_track_ends_a_waiting_reader() -> None:
    # aiortc's relay reads its source until recv raises; a reader held by a closed gate must be let go.
    for track in (GatedCamera(tag=5), GatedMicrophone()):
        reader = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.05)
        assert not reader.done()
        track.stop()
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(reader, 1)


def test_the_placement_table_recomputes_each_pairs_floor_with_the_matchmaker_elsewhere() -> None:
    topology = world_topology()
    pairs = [("Sydney", "Johannesburg"), ("Frankfurt", "Virginia"), ("Tokyo", "Seoul")]
    next_calls = [p for p in pairs for _ in range(3)]
    rows = placements(topology, ["Frankfurt", "Sydney", "Tokyo"], pairs, next_calls, last_mile_ms=15, limit_ms=300)
    assert [r.next_floor_p95_ms for r in rows] == sorted(r.next_floor_p95_ms for r in rows)
    by_region = {r.control_region: r for r in rows}
    for control, row in by_region.items():
        floors = [pair_floor(topology, control, *p, last_mile_ms=15).total_ms for p in pairs]
        assert row.worst_floor_ms == max(floors)
        assert row.pairs_over_ms == sum(f > 300 for f in floors)
    # A matchmaker in Tokyo is nearer both of Tokyo-Seoul's edges than one in Frankfurt.
    tokyo_seoul = ("Tokyo", "Seoul")
    near = pair_floor(topology, "Tokyo", *tokyo_seoul, last_mile_ms=15).total_ms
    assert near < pair_floor(topology, "Frankfurt", *tokyo_seoul, last_mile_ms=15).total_ms
    text = placement_table(rows, "Frankfurt", 300)
    [measured] = [line for line in text.splitlines() if "<- measured" in line]
    assert measured.startswith("Frankfurt")
