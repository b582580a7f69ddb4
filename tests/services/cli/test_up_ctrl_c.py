"""`duet up`, then Ctrl-C while it serves: the services stop in order, and it exits only after them.

(A stop cut short by the cancellation would leave the services to the
supervisor's death signal: all at once, and still running when it exits.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def _services_of(routing_address: str, state_dir: Path) -> list[int]:
    """PIDs of the processes started for this cluster: they name its routing address or its state dir."""
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ours = routing_address in cmdline or str(state_dir) in cmdline
        if "duet.services.cli" in cmdline and ours and " up " not in cmdline:
            pids.append(int(proc_dir.name))
    return pids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stopped_at(log: Path) -> float:
    for line in log.read_text().splitlines():
        if line.rstrip().endswith("shutting down") and (m := re.match(r"(\S+ \S+),(\d+)", line)):
            return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
    raise AssertionError(f"{log.name} never logged its shutdown")


def test_ctrl_c_while_serving_stops_matchmaker_then_edges_then_routing(database_url: str, tmp_path: Path) -> None:
    args = ["up", "--web-port", "0", "--calls", "1", "--no-bot", "--database-url", database_url]
    proc = subprocess.Popen(
        [sys.executable, "-m", "duet.services.cli", *args, "--state-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "Ctrl-C to stop" in line:
                break
        else:
            pytest.fail("duet up ended before serving:\n" + "".join(seen[-20:]))
        routing_address = next(m.group(1) for line in seen if (m := re.search(r"routing (\S+)", line)))
        services = _services_of(routing_address, tmp_path)
        assert len(services) == 5, services  # routing, matchmaker, 3 edges
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert not [pid for pid in services if _running(pid)], "services still running after duet up exited"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert rest.rstrip().endswith("stopped cleanly")
    logs = tmp_path / "logs"
    matchmaker = _stopped_at(logs / "matchmaker.log")
    edges = [_stopped_at(p) for p in logs.glob("edge-*.log")]
    routing = _stopped_at(logs / "routing.log")
    assert len(edges) == 3
    assert matchmaker <= min(edges)
    # Routing is told to stop only once every edge has exited, which takes an edge well over 50 ms
    # after it starts shutting down; signalled together they would log within a few ms.
    assert routing - max(edges) > 0.050, (edges, routing)
    for log in logs.glob("*.log"):  # no service lost its database while still running
        assert "CannotConnectNowError" not in log.read_text(), log.name
