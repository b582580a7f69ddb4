"""make bench-edge, tiny: one call for 2 s through each path; checks the output's shape and that media flowed, not timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.edge.traffic import (
    ABS_SEND_TIME_URI,
    MID_URI,
    STAMP,
    STAMP_MAGIC,
    STAMP_OFFSET,
    OutStream,
    stamp_send_time,
)

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
    args = ["--steps", "1", "--seconds", "2", "--warmup", "0.5", "--no-profile", "--out-dir", str(tmp_path)]
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

    steps = json.loads((tmp_path / "report.json").read_text())["steps"]
    by_scenario = {s["scenario"]: s for s in steps}
    assert set(by_scenario) == {"1-edge", "3-edge", "floor-srtp", "floor-plain"}
    for step in steps:
        assert step["calls"] == 1
        # Both directions of the call arrived (the receivers only count stamped packets of this window).
        assert step["forwarded_pps"] > 0.5 * step["offered_pps"], step
        assert step["us_per_packet"] > 0, step
    assert len(by_scenario["3-edge"]["cpu_pct"]) == 3
    # The summary's figures come from the measured steps.
    assert summary["us_per_packet"] == by_scenario["1-edge"]["us_per_packet"]
    assert summary["floor_us_per_packet"] == by_scenario["floor-srtp"]["us_per_packet"]


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
