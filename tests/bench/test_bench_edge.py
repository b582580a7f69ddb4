"""make bench-edge, tiny: one call for 2 s through each path; checks the output's shape and that media flowed, not timing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.edge import arrival
from bench.edge.cpu import run_queue_wait_seconds
from bench.edge.scenarios import Load
from bench.edge.traffic import (
    ABS_SEND_TIME_URI,
    MID_URI,
    STAMP,
    STAMP_MAGIC,
    STAMP_OFFSET,
    OutStream,
    stamp_send_time,
)
from bench.loop_lag import Stall, watch_loop_lag

REPO_ROOT = Path(__file__).resolve().parents[2]

SUMMARY_KEYS = {
    "calls_per_core_lossless",
    "floor_calls_per_core",
    "us_per_packet",
    "floor_us_per_packet",
    "ratio_to_floor",
    "added_latency_p50_us",
    "added_latency_p99_us",
    "decodes",
}


@pytest.mark.slow
def test_one_call_is_forwarded_by_every_path_without_decoding(tmp_path: Path) -> None:
    args = [
        "--steps",
        "1",
        "--seconds",
        "2",
        "--warmup",
        "0.5",
        "--rounds",
        "2",
        "--no-profile",
        "--out-dir",
        str(tmp_path),
    ]
    run = subprocess.run(
        [sys.executable, "-m", "bench.edge", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert set(summary) == SUMMARY_KEYS
    assert summary["decodes"] == 0

    report = json.loads((tmp_path / "report.json").read_text())
    steps = report["steps"]
    assert {s["scenario"] for s in steps} == {"1-edge", "3-edge", "floor-srtp", "floor-plain"}
    # The ramps, then the second round's 1-edge and floor-srtp.
    assert [s["scenario"] for s in steps].count("1-edge") == 2
    assert [s["scenario"] for s in steps].count("floor-srtp") == 2
    for step in steps:
        assert step["calls"] == 1
        # Both directions of the call arrived (the receivers only count stamped packets of this window).
        assert step["forwarded_pps"] > 0.5 * step["offered_pps"], step
        assert step["us_per_packet"] > 0, step
        # Every packet timed by the kernel's arrival time, which is never later than the load process's read.
        assert step["kernel_timed"] == 1.0, step
        assert 0 < step["latency_p99_us"] <= step["read_latency_p99_us"], step
        assert set(step["gc_longest_ms"]) >= {"load"}, step
        assert set(step["waited_pct"]) >= {"load"} and len(step["waited_pct"]) == len(step["cpu_pct"]) + 1, step
    assert len(next(s for s in steps if s["scenario"] == "3-edge")["cpu_pct"]) == 3
    # The summary's figures come from the rounds: the ratio from the round of median ratio (the lower of two).
    rounds = report["rounds"]
    assert len(rounds) == 2
    ratios = [r["floor_best"]["us_per_packet"] / r["edge_best"]["us_per_packet"] for r in rounds]
    cost = rounds[ratios.index(min(ratios))]
    assert summary["us_per_packet"] == cost["edge_best"]["us_per_packet"]
    assert summary["floor_us_per_packet"] == cost["floor_best"]["us_per_packet"]
    assert summary["ratio_to_floor"] == round(min(ratios), 3)
    p99s = sorted(r["edge_half"]["latency_p99_us"] for r in rounds)
    assert summary["added_latency_p99_us"] == p99s[0]


def _until_the_kernel_stamps_arrivals(rx: socket.socket, tx: socket.socket) -> None:
    """The first socket that asks turns stamping on from a kernel work queue: probe until it is on
    (a probe read 5 ms after it arrived, not stamped at the read)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        tx.sendto(b"probe", rx.getsockname())
        time.sleep(0.005)
        assert rx.recv(64) == b"probe"
        read = time.time_ns()
        arrived = arrival.last_arrival_ns(rx.fileno())
        if arrived is not None and read - arrived >= 4_000_000:
            return
    raise AssertionError("the kernel never stamped an arrival")


def test_the_kernel_tells_when_a_datagram_arrived_not_when_it_was_read() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        assert arrival.enable(rx.fileno())
        _until_the_kernel_stamps_arrivals(rx, tx)
        sent = time.time_ns()
        tx.sendto(b"stamped", rx.getsockname())
        time.sleep(0.05)  # the receiver is busy elsewhere
        assert rx.recv(64) == b"stamped"
        read = time.time_ns()
        arrived = arrival.last_arrival_ns(rx.fileno())
        assert arrived is not None
        assert sent - 1_000_000 <= arrived < sent + 20_000_000, (arrived - sent) / 1e6
        assert read - arrived >= 50_000_000


def test_the_load_sends_each_stream_when_it_is_due_and_each_client_s_rtcp() -> None:
    class Recorder:
        def __init__(self, start: float) -> None:
            self.streams = [
                OutStream(0x100, 96, True, {1: MID_URI}, b"0", start),
                OutStream(0x101, 111, False, {1: MID_URI}, b"1", start),
            ]
            self.packets = 0
            self.rtcp = 0

        async def send(self, packets: list[bytearray], send_time_at: int) -> None:
            self.packets += len(packets)

        async def send_rtcp(self) -> None:
            self.rtcp += 1

        async def close(self) -> None:
            pass

    async def run() -> tuple[list[Recorder], float]:
        load = Load()
        start = time.perf_counter()
        ends = [Recorder(start + i / 300) for i in range(10)]
        load.add(*ends)
        load.start()
        await asyncio.sleep(1.3)
        await load.stop()
        return ends, time.perf_counter() - start

    ends, ran = asyncio.run(run())
    for end in ends:
        # 100 video packets/s (frames of 3, 3, 4) and 50 audio packets/s: what was due, give or take a frame.
        due = 100 * ran + 50 * ran
        assert due - 10 <= end.packets <= due + 5, (end.packets, due)
        assert end.rtcp >= 1  # the first within a second


def test_the_send_time_is_stamped_when_the_packet_leaves_not_when_its_burst_was_built() -> None:
    stream = OutStream(0x1234, 96, True, {1: MID_URI, 3: ABS_SEND_TIME_URI}, b"0", time.perf_counter() - 1)
    burst = stream.packets_due(time.perf_counter(), step=7)
    assert len(burst) >= 30
    payload_at = 12 + 4 + 4 * int.from_bytes(burst[0][14:16], "big")
    built_ns = STAMP.unpack_from(burst[-1], payload_at + STAMP_OFFSET)[2]
    time.sleep(0.002)
    sent = stamp_send_time(burst[-1], stream.send_time_at)
    magic, step, sent_ns = STAMP.unpack_from(sent, payload_at + STAMP_OFFSET)
    assert (magic, step) == (STAMP_MAGIC, 7)
    assert sent_ns - built_ns >= 2_000_000
    assert sent[:payload_at] == bytes(burst[-1][:payload_at])  # header and extensions untouched


def test_a_blocked_event_loop_is_noted_as_a_stall_busy_when_it_used_the_cpu() -> None:
    async def run() -> list[Stall]:
        async with watch_loop_lag() as lag:
            await asyncio.sleep(0.05)
            lag.stalls_since_last(5.0)
            time.sleep(0.06)  # noqa: ASYNC251 - blocked on purpose, not using the CPU
            await asyncio.sleep(0.03)
            until = time.process_time() + 0.06
            while time.process_time() < until:  # blocked, using the CPU
                pass
            await asyncio.sleep(0.03)
            return lag.stalls_since_last(5.0)

    noted = [x for x in asyncio.run(run()) if x.late_ms >= 40]  # a busy machine may add short ones
    assert len(noted) == 2, noted
    waiting, busy = noted
    assert waiting.late_ms >= 40 and not waiting.busy, waiting
    assert busy.late_ms >= 40 and busy.busy, busy


def test_run_queue_wait_is_read_for_a_live_process() -> None:
    first = run_queue_wait_seconds(os.getpid())
    time.sleep(0.01)
    assert 0 <= first <= run_queue_wait_seconds(os.getpid())
