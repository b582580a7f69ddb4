"""The topology admin API and `duet topology` end to end: a real routing service, PostgreSQL and gRPC.

The routing service runs in the test's event loop (as `duet routing` runs it);
the command runs as `duet` does, in a worker thread (it is a blocking gRPC
client) or as its own process where the exit code and stderr of the real
program are the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from duet.routing.topology import Topology, default_topology
from duet.routing.topology_file import dump_topology, parse_topology
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.secrets import SECRETS_ENV, AuthSecrets, ensure_secrets_file
from duet.services.auth.tokens import Role, mint_service_token
from duet.services.cli import topology as topology_cli
from duet.services.cli.main import main
from duet.services.cli.ops_credentials import os_user_name
from duet.services.cli.topology import ROUTING_ENV
from duet.services.devkit.local_cluster import CLUSTER_FILE, running_cluster_address
from duet.services.devkit.scratch_database import scratch_database
from duet.services.routing_server.admin import TopologyAdminServicer
from duet.services.routing_server.server import serve_routing
from duet.services.routing_server.state import RoutingState
from duet.services.rpc.server import start_server
from duet.services.store.postgres import Store
from duet.services.store.topology_audit import MemoryTopologyAudit, PostgresTopologyAudit, TopologyChangeRow
from duet.v1 import admin_pb2, admin_pb2_grpc, common_pb2, routing_pb2, routing_pb2_grpc
from tests.services.routing_server import credentials

pytestmark = pytest.mark.slow

REGIONS = ("Frankfurt", "Virginia", "Singapore")


@pytest.fixture(autouse=True)
def auth_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuthSecrets:
    """Secrets the routing service verifies with and `duet topology` (in-process or its own
    process) mints its ops tokens from, as it does beside a local cluster."""
    path = tmp_path / "auth-secrets.json"
    monkeypatch.setenv(SECRETS_ENV, str(path))
    return ensure_secrets_file(path)


# Who the audit log names for a change `duet topology` made: the ops-admin token it minted for this user.
ME = f"ops-admin:{os_user_name()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Routing:
    """A routing service with a database, restartable on the same address and database."""

    dsn: str
    topology_file: Path
    secrets: AuthSecrets
    address: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    channel: grpc.aio.Channel | None = None

    async def start(self, *, reset: bool = False) -> None:
        self.stop = asyncio.Event()
        self.address = self.address or f"127.0.0.1:{free_port()}"
        self.task = asyncio.create_task(
            serve_routing(
                parse_topology(self.topology_file.read_text()),
                secrets=self.secrets,
                bind=self.address,
                database=self.dsn,
                stop=self.stop,
                topology_source=str(self.topology_file),
                reset_topology=reset,
            )
        )
        self.channel = credentials.channel(self.address, self.secrets)
        ready = asyncio.ensure_future(self.channel.channel_ready())
        await asyncio.wait({ready, self.task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            ready.cancel()
            self.task.result()  # raises what stopped it
        assert ready.done(), "the routing service did not start within 20 s"

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        self.stop.set()
        if self.task is not None:
            await self.task

    @property
    def routing(self) -> routing_pb2_grpc.RoutingStub:
        return routing_pb2_grpc.RoutingStub(self.channel)

    @property
    def admin(self) -> admin_pb2_grpc.TopologyAdminStub:
        return admin_pb2_grpc.TopologyAdminStub(self.channel)

    async def register(self, *edge_ids: str) -> None:
        for i, edge_id in enumerate(edge_ids):
            await self.routing.RegisterEdge(
                routing_pb2.RegisterEdgeRequest(
                    edge_id=edge_id,
                    control_address=f"127.0.0.1:{41000 + i}",
                    backbone_address=f"127.0.0.1:{42000 + i}",
                    media_host="127.0.0.1",
                )
            )

    async def version(self) -> int:
        t = await self.routing.GetTopology(routing_pb2.GetTopologyRequest())
        return int(t.version)


@pytest.fixture
async def routing(database_url: str, tmp_path: Path, auth_secrets: AuthSecrets) -> AsyncIterator[Routing]:
    path = tmp_path / "topology.yaml"
    path.write_text(dump_topology(default_topology(REGIONS)))
    async with scratch_database(database_url) as dsn:
        r = Routing(dsn, path, auth_secrets)
        await r.start()
        try:
            yield r
        finally:
            await r.close()


async def duet(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`duet ARGS` in a worker thread (the event loop keeps serving); exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = await asyncio.to_thread(main, list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_duet(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `duet` program, as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "duet.services.cli", *args], capture_output=True, text=True, timeout=60
    )


def routes(table: routing_pb2.RouteTable) -> dict[str, str]:
    return {e.dest_edge_id: e.next_hop_edge_id for e in table.entries}


async def next_table(stream: AsyncIterator[routing_pb2.RouteTable]) -> routing_pb2.RouteTable:
    # "At once": well within a second on this machine; 5 s leaves room for a loaded CI box.
    return await asyncio.wait_for(anext(stream), 5)


# ---- drain, undrain, link: live route tables and the audit log ------------------------


async def test_drain_undrain_and_link_changes_reach_a_route_watcher_at_once(
    routing: Routing, capsys: pytest.CaptureFixture[str]
) -> None:
    await routing.register("fra-1", "vir-1", "sin-1")
    watch = routing.routing.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id="vir-1"))
    stream = watch.__aiter__()
    try:
        first = await next_table(stream)
        assert routes(first) == {"fra-1": "fra-1", "sin-1": "sin-1"}
        at = ("--routing", routing.address)

        code, out, err = await duet(capsys, "topology", "link", "vir-1", "sin-1", "--down", *at)
        assert code == 0, err
        assert "link vir-1<->sin-1: state up -> down" in out and "applied: topology version" in out
        table = await next_table(stream)
        assert routes(table) == {"fra-1": "fra-1", "sin-1": "fra-1"}  # around through Frankfurt
        assert table.version > first.version

        code, out, err = await duet(capsys, "topology", "drain", "fra-1", *at)
        assert code == 0, err
        assert "edge fra-1: state active -> draining" in out
        # A draining edge carries no transit: Singapore is out of reach until a path is back.
        assert routes(await next_table(stream)) == {"fra-1": "fra-1"}

        code, out, err = await duet(capsys, "topology", "undrain", "fra-1", *at)
        assert code == 0, err
        assert routes(await next_table(stream)) == {"fra-1": "fra-1", "sin-1": "fra-1"}

        code, out, err = await duet(capsys, "topology", "link", "vir-1", "sin-1", "--up", "--rtt", "50", *at)
        assert code == 0, err
        assert "link vir-1<->sin-1: rtt_ms 225 -> 50, state down -> up" in out
        assert "Virginia - Singapore" in out  # its predicted connect time changed
        table = await next_table(stream)
        assert routes(table) == {"fra-1": "fra-1", "sin-1": "sin-1"}
        assert {e.dest_edge_id: e.path_rtt_ms for e in table.entries}["sin-1"] == 50

        # Changing nothing records nothing and wakes no one.
        code, out, err = await duet(capsys, "topology", "undrain", "fra-1", *at)
        assert code == 0 and "no changes" in out
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.5)
    finally:
        watch.cancel()

    code, out, err = await duet(capsys, "topology", "log", *at)
    assert code == 0, err
    me = ME
    entries = [line for line in out.splitlines() if line.startswith("#")]
    assert [line.split("  ")[2:4] for line in entries] == [
        [me, "link"], [me, "undrain"], [me, "drain"], [me, "link"], ["duet routing (start)", "load file"],
    ]  # fmt: skip
    assert "    edge fra-1: state draining -> active" in out
    assert "in its memory" not in out  # the log is in PostgreSQL


async def test_a_removed_edge_loses_its_route_stream(routing: Routing, tmp_path: Path) -> None:
    watch = routing.routing.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id="sin-1"))
    stream = watch.__aiter__()
    await next_table(stream)
    two = tmp_path / "two.yaml"
    two.write_text(dump_topology(default_topology(REGIONS[:2])))
    result = await routing.admin.ApplyTopology(admin_pb2.ApplyTopologyRequest(text=two.read_text()))
    assert result.applied and "edge sin-1: removed" in result.changes
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await next_table(stream)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "edge 'sin-1' was removed from the topology" in (caught.value.details() or "")


# ---- diff and apply, as the real program ---------------------------------------------------


async def test_diff_then_apply_a_file_with_the_real_program(routing: Routing, tmp_path: Path) -> None:
    slow = default_topology(REGIONS).with_link("fra-1", "sin-1", rtt_ms=900).with_link("vir-1", "sin-1", rtt_ms=950)
    slow = slow.with_edge_state("vir-1", "draining")
    path = tmp_path / "slow.yaml"
    path.write_text(dump_topology(slow))
    at = ("--routing", routing.address, "--matchmaker-region", "Frankfurt")
    before = await routing.version()

    diff = await asyncio.to_thread(run_duet, "topology", "diff", str(path), *at)
    assert diff.returncode == 0, diff.stderr
    assert "  edge vir-1: state active -> draining" in diff.stdout
    assert "  link fra-1<->sin-1: rtt_ms 156 -> 900" in diff.stdout
    table = {
        line[:38].strip(): line[38:].split()
        for line in diff.stdout.splitlines()
        if line.startswith("  ") and " - " in line
    }
    # before, after, change, flag: the same figures lint and the connect model give (606 = 78 + 450 + 30 + 33 + 15).
    assert table["Frankfurt - Singapore"] == ["234", "606", "+372", "OVER", "600", "ms"], table
    assert table["Virginia - Singapore"][3:] == ["OVER", "600", "ms"]
    assert len(table["Frankfurt - Virginia"]) == 3  # listed, within budget: no flag
    assert "2 of 6 region pairs over 600 ms after the change (0 before)" in diff.stdout
    assert "dry run: nothing applied" in diff.stdout
    assert await routing.version() == before

    dry = await asyncio.to_thread(run_duet, "topology", "apply", str(path), "--dry-run", *at)
    assert dry.returncode == 0 and "dry run: nothing applied" in dry.stdout
    assert await routing.version() == before

    applied = await asyncio.to_thread(run_duet, "topology", "apply", str(path), *at)
    assert applied.returncode == 0, applied.stderr
    assert f"applied: topology version {before} -> {before + 1}" in applied.stdout

    shown = await asyncio.to_thread(run_duet, "topology", "show", "--routing", routing.address)
    assert shown.returncode == 0, shown.stderr
    assert parse_topology(shown.stdout) == slow.with_version(
        1
    )  # what runs is what was applied (files carry no version)
    assert "# not registered" in shown.stdout


# ---- bad input: words, non-zero exits, nothing applied --------------------------------------


async def test_bad_files_and_arguments_change_nothing(
    routing: Routing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await routing.register("fra-1", "vir-1")
    at = ("--routing", routing.address)
    before = await routing.version()
    log_before = (await routing.admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest())).changes

    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_topology(default_topology(REGIONS)).replace("capacity: 100", "capacity: -1", 1))
    renumbered = tmp_path / "renumbered.yaml"
    renumbered.write_text(dump_topology(default_topology(REGIONS)).replace("number: 1,", "number: 7,"))
    t = default_topology(REGIONS)
    without_vir = tmp_path / "without-vir.yaml"
    without_vir.write_text(
        dump_topology(
            Topology(
                t.regions,
                tuple(e for e in t.edges if e.edge_id != "vir-1"),
                tuple(ln for ln in t.links if "vir-1" not in (ln.a, ln.b)),
            )
        )
    )
    cases: Sequence[tuple[tuple[str, ...], int, str]] = [
        (("apply", str(bad)), 1, f"rejected: {bad}: 1 problem in the topology file:\n  line 6, column "),
        (("apply", str(bad)), 1, "edges[0].capacity: must be an integer >= 1, got -1; nothing was applied"),
        (("diff", str(bad)), 1, "rejected: "),
        (("apply", str(renumbered)), 1, "refused: change refused: edge fra-1: number 1 -> 7"),
        (("apply", str(without_vir)), 1, "edge vir-1 is registered and active: drain it"),
        (("apply", str(tmp_path / "nowhere.yaml")), 1, "cannot read "),
        (("drain", "mars-1"), 1, "not found: unknown edge 'mars-1'; nothing was applied"),
        (("link", "fra-1", "mars-1", "--rtt", "5"), 1, "not found: unknown edge 'mars-1'"),
        (("link", "fra-1", "fra-1", "--down"), 1, "rejected: a link joins two different edges"),
        (("link", "fra-1", "vir-1"), 1, "nothing to change: give --rtt MS, --loss P, --down or --up"),
        (("link", "fra-1", "vir-1", "--loss", "2"), 2, "'2' is not a loss fraction between 0 and 1"),
        (("link", "fra-1", "vir-1", "--rtt", "fast"), 2, "'fast' is not a number of milliseconds"),
        (("link", "fra-1", "vir-1", "--up", "--down"), 2, "not allowed with argument"),
        (("drain",), 2, "the following arguments are required: EDGE"),
        (("log", "--limit", "0"), 2, "'0' is not a whole number from 1 to 1000"),
        (("diff", str(bad.with_name("x")), "--matchmaker-region", "Mars"), 1, "cannot read"),
    ]
    for args, code, message in cases:
        got, out, err = await duet(capsys, "topology", *args, *at)
        assert (got, message in err) == (code, True), (args, got, out, err)
        assert "Traceback" not in err

    # A file that is fine but a matchmaker region that is not.
    good = tmp_path / "good.yaml"
    good.write_text(dump_topology(default_topology(REGIONS).with_link("fra-1", "vir-1", rtt_ms=70)))
    got, _, err = await duet(capsys, "topology", "diff", str(good), "--matchmaker-region", "Mars", *at)
    assert got == 1 and "impact.matchmaker_region 'Mars' is not declared in the topology" in err

    assert await routing.version() == before
    log_after = (await routing.admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest())).changes
    assert list(log_after) == list(log_before)


async def test_an_unreachable_routing_service_is_said_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    for args in (("show",), ("drain", "fra-1"), ("log",)):
        code, _, err = await duet(capsys, "topology", *args, "--routing", address)
        assert code == 1
        assert f"cannot reach the routing service at {address}" in err and "--routing ADDRESS" in err
    code, _, err = await duet(capsys, "topology", "drain", "fra-1", "--routing", address)
    assert "nothing was applied" in err


async def test_rpc_statuses(routing: Routing) -> None:
    admin = routing.admin
    version = await routing.version()
    cases = [
        (admin.ApplyTopology(admin_pb2.ApplyTopologyRequest(text="")), grpc.StatusCode.INVALID_ARGUMENT, "text is required"),
        (
            admin.ApplyTopology(admin_pb2.ApplyTopologyRequest(text="regions: [Frankfurt]\nedges: 5\n", source_name="f")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "f: 1 problem in the topology file:\n  line 2, column 8: edges: must be a list of edges",
        ),
        (
            admin.ApplyTopology(
                admin_pb2.ApplyTopologyRequest(
                    text=dump_topology(default_topology(REGIONS)), expected_version=version + 5
                )
            ),
            grpc.StatusCode.ABORTED,
            f"the topology is at version {version}, not {version + 5}",
        ),
        (admin.SetEdgeState(admin_pb2.SetEdgeStateRequest(edge_id="fra-1")), grpc.StatusCode.INVALID_ARGUMENT, "state is required"),
        (
            admin.SetEdgeState(admin_pb2.SetEdgeStateRequest(edge_id="x", state=common_pb2.EDGE_STATE_DOWN)),
            grpc.StatusCode.NOT_FOUND,
            "unknown edge 'x'",
        ),
        (admin.SetLink(admin_pb2.SetLinkRequest(a="fra-1", b="vir-1")), grpc.StatusCode.INVALID_ARGUMENT, "nothing to change"),
        (admin.SetLink(admin_pb2.SetLinkRequest(a="fra-1", b="vir-1", rtt_ms=-1)), grpc.StatusCode.INVALID_ARGUMENT, "rtt_ms"),
        (admin.SetLink(admin_pb2.SetLinkRequest(a="fra-1", b="vir-1", loss=float("nan"))), grpc.StatusCode.INVALID_ARGUMENT, "loss"),
        (
            admin.SetLink(admin_pb2.SetLinkRequest(a="fra-1", b="vir-1", up=False, impact=admin_pb2.ImpactOptions(last_mile_ms=-2))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "impact.last_mile_ms",
        ),
        (admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest(limit=5000)), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
    ]  # fmt: skip
    for call, code, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is code and message in (caught.value.details() or ""), caught.value
    # A link that does not exist needs its RTT.
    t = default_topology(REGIONS)
    sparse = Topology(t.regions, t.edges, tuple(ln for ln in t.links if {ln.a, ln.b} != {"fra-1", "sin-1"}))
    await admin.ApplyTopology(admin_pb2.ApplyTopologyRequest(text=dump_topology(sparse)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.SetLink(admin_pb2.SetLinkRequest(a="sin-1", b="fra-1", up=True))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "there is no link sin-1<->fra-1; give its rtt_ms to add it" in (caught.value.details() or "")
    added = await admin.SetLink(admin_pb2.SetLinkRequest(a="sin-1", b="fra-1", rtt_ms=160))
    assert added.applied and added.changes == ["link sin-1<->fra-1: added (rtt 160 ms, loss 0, up)"]
    # The actor is who the caller's verified token names; a name it merely declares is ignored.
    bot = bearer_metadata(mint_service_token(routing.secrets.service, Role.OPS_ADMIN, "ops-bot"))  # type: ignore[arg-type]
    drained = await admin.SetEdgeState(
        admin_pb2.SetEdgeStateRequest(edge_id="sin-1", state=common_pb2.EDGE_STATE_DRAINING),
        metadata=(*bot, ("x-duet-actor", "someone-else")),
    )
    log = await admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest(limit=2))
    assert [(c.change_id, c.actor, c.action) for c in log.changes] == [
        (drained.change_id, "ops-admin:ops-bot", "drain"),
        (added.change_id, f"ops-admin:{credentials.ADMIN_SUBJECT}", "link"),
    ]
    assert log.durable


# ---- restarts ---------------------------------------------------------------------------


async def test_applied_changes_and_their_log_survive_a_restart(
    routing: Routing, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ("--routing", routing.address)
    assert (await duet(capsys, "topology", "drain", "fra-1", *at))[0] == 0
    assert (await duet(capsys, "topology", "link", "vir-1", "sin-1", "--rtt", "180", "--loss", "0.02", *at))[0] == 0
    version = await routing.version()

    await routing.close()
    await routing.start()  # same file, same database
    running = await routing.routing.GetTopology(routing_pb2.GetTopologyRequest())
    assert running.version == version
    assert {e.edge_id: e.state for e in running.edges}["fra-1"] == common_pb2.EDGE_STATE_DRAINING
    link = next(ln for ln in running.links if {ln.a, ln.b} == {"vir-1", "sin-1"})
    assert (link.rtt_ms, link.loss) == (180, 0.02)

    code, out, err = await duet(capsys, "topology", "log", *at)
    assert code == 0, err
    assert "drain  v1 -> v2" in out and "link  v2 -> v3" in out and ME in out
    assert "    link vir-1<->sin-1: rtt_ms 225 -> 180, loss 0 -> 0.02" in out

    # Edges register again after a restart, and a change still reaches them.
    await routing.register("fra-1", "vir-1", "sin-1")
    assert (await duet(capsys, "topology", "undrain", "fra-1", *at))[0] == 0

    # --reset-topology serves the file again, and says so in the log.
    await routing.close()
    await routing.start(reset=True)
    running = await routing.routing.GetTopology(routing_pb2.GetTopologyRequest())
    assert {e.edge_id: e.state for e in running.edges}["fra-1"] == common_pb2.EDGE_STATE_ACTIVE
    assert running.version > version + 1  # versions keep increasing across the reset
    log = await routing.admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest(limit=1))
    entry = log.changes[0]
    assert (entry.actor, entry.action) == ("duet routing (start)", "load file")
    assert entry.changes[0] == f"reset to {routing.topology_file}"
    assert "link vir-1<->sin-1: rtt_ms 180 -> 225, loss 0.02 -> 0" in entry.changes


async def test_without_a_database_the_log_is_kept_in_memory_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], auth_secrets: AuthSecrets
) -> None:
    stop = asyncio.Event()
    address = f"127.0.0.1:{free_port()}"
    task = asyncio.create_task(serve_routing(default_topology(REGIONS), secrets=auth_secrets, bind=address, stop=stop))
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 20)
        assert (await duet(capsys, "topology", "drain", "vir-1", "--routing", address))[0] == 0
        code, out, _ = await duet(capsys, "topology", "log", "--routing", address)
        assert code == 0
        assert "the routing service has no database: this log is in its memory" in out
        assert "drain  v1 -> v2" in out
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task


class BrokenAudit(MemoryTopologyAudit):
    """An audit log whose database has gone away."""

    async def record(self, **kwargs: Any) -> TopologyChangeRow:
        raise ConnectionRefusedError("connection refused")


async def test_a_change_the_audit_log_cannot_record_is_not_applied(capsys: pytest.CaptureFixture[str]) -> None:
    state = RoutingState(default_topology(REGIONS))
    server, address = await start_server(
        "127.0.0.1:0",
        lambda s: admin_pb2_grpc.add_TopologyAdminServicer_to_server(TopologyAdminServicer(state, BrokenAudit()), s),
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            admin = admin_pb2_grpc.TopologyAdminStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.SetEdgeState(
                    admin_pb2.SetEdgeStateRequest(edge_id="fra-1", state=common_pb2.EDGE_STATE_DRAINING)
                )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "the audit log could not be written" in (caught.value.details() or "")
        assert "nothing was applied" in (caught.value.details() or "")
        code, _, err = await duet(capsys, "topology", "drain", "fra-1", "--routing", address)
        assert code == 1 and "cannot reach" not in err
        assert "failed (UNAVAILABLE): the audit log could not be written" in err and "nothing was applied" in err
        assert state.topology.version == 1 and state.topology.edge("fra-1").state.value == "active"
    finally:
        await server.stop(grace=None)


async def test_a_recorded_topology_that_cannot_be_read_stops_the_start_in_words(
    database_url: str, auth_secrets: AuthSecrets
) -> None:
    async with scratch_database(database_url) as dsn:
        store = await Store.open(dsn)
        try:
            await PostgresTopologyAudit(store.pool).record(
                actor="ana", action="apply", changes=[], version_before=1, version_after=2, topology={"regions": 5}
            )
        finally:
            await store.close()
        with pytest.raises(SystemExit) as caught:
            await serve_routing(
                default_topology(REGIONS), secrets=auth_secrets, bind=f"127.0.0.1:{free_port()}", database=dsn
            )
    message = str(caught.value)
    assert "the topology recorded by change 1 (apply by ana) cannot be read" in message
    assert "--reset-topology" in message


def test_the_command_finds_a_running_local_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROUTING_ENV, raising=False)
    assert running_cluster_address(tmp_path, "routing") is None
    (tmp_path / CLUSTER_FILE).write_text(json.dumps({"pid": os.getpid(), "routing": "127.0.0.1:5999"}))
    assert running_cluster_address(tmp_path, "routing") == "127.0.0.1:5999"
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setattr(topology_cli, "STATE_DIR", Path(tmp_path.name))
    assert topology_cli.routing_address(None) == "127.0.0.1:5999"
    monkeypatch.setenv(ROUTING_ENV, "10.0.0.1:1")
    assert topology_cli.routing_address(None) == "10.0.0.1:1"
    assert topology_cli.routing_address("h:2") == "h:2"
    # A file left by a supervisor that no longer runs is ignored.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / CLUSTER_FILE).write_text(json.dumps({"pid": int(dead.stdout), "routing": "127.0.0.1:5999"}))
    assert running_cluster_address(tmp_path, "routing") is None
    monkeypatch.delenv(ROUTING_ENV)
    assert topology_cli.routing_address(None) == topology_cli.DEFAULT_ROUTING
