"""Two matchmaker replicas on one PostgreSQL, one of them stopped cleanly (SIGTERM) mid-load.

Real processes (PostgreSQL, routing, two matchmakers, two edges) and SDK
clients with synthetic cameras on both replicas, as in ``test_replicas``, but
the replica is stopped the way Ctrl-C or a rolling restart stops it. For the
queue that must be no worse than a death: the survivor holds the shard within
about a poll (the stopping replica lets its locks go at once), every waiting
user reconnects, keeps their ticket and its queued_at and is matched with the
partner speaking their language; the call that was live on the stopped
replica is ended with "matchmaker shutting down" recorded (not taken for a
dead replica's); the stopped process exits 0. The times are printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from duet.services.devkit.local_cluster import LocalCluster
from duet.services.devkit.scratch_database import scratch_database
from duet.services.web.app import WebServer
from tests.system.replica_load import REGIONS, ReplicaLoad, shard_owner

pytestmark = pytest.mark.slow

# The stopping replica releases its locks before it finishes; the survivor polls every 0.5 s.
TAKEOVER_BOUND_S = 2.0


@pytest.mark.parametrize("victim", ["owner", "forwarder"])
async def test_a_replica_stopped_cleanly_keeps_every_waiting_users_place(
    database_url: str, tmp_path: Path, victim: str
) -> None:
    """``victim``: stop the shard's owner (the other replica takes it over), or the replica that only
    forwarded its clients' streams (the owner keeps their tickets for them to resume)."""
    async with scratch_database(database_url, prefix="cleanstop") as dsn:
        cluster = LocalCluster(state_dir=tmp_path / "state", database=dsn, regions=REGIONS, matchmakers=2)
        async with cluster as info:
            load = ReplicaLoad(info, await asyncpg.connect(dsn))
            db = load.db
            try:
                owner = await shard_owner(db)
                assert owner in info.matchmakers
                other = next(a for a in info.matchmakers if a != owner)
                stopped, survivor = (owner, other) if victim == "owner" else (other, owner)
                await load.start(owner, other)

                pid = info.matchmaker_pids[stopped]
                [child] = [c for c in cluster.children if c.proc.pid == pid]
                stop_wall, stop_at = time.time(), time.monotonic()
                os.kill(pid, signal.SIGTERM)
                exited = asyncio.create_task(child.proc.wait())
                while (now_owner := await shard_owner(db)) != survivor:
                    assert victim == "owner" or now_owner == survivor, "the owner gave the shard up"
                    assert time.monotonic() - stop_at < TAKEOVER_BOUND_S, f"the shard is still {now_owner!r}'s"
                    await asyncio.sleep(0.01)
                takeover_s = time.monotonic() - stop_at
                code = await asyncio.wait_for(exited, 15)
                exit_s = time.monotonic() - stop_at
                assert code == 0, f"the stopped replica exited {code}"

                # The live call on the stopped replica ended, and the record says why.
                if victim == "owner":
                    row = await db.fetchrow(
                        "SELECT state, end_reason FROM calls WHERE call_id = $1", load.early[0].call_id
                    )
                    assert row is not None and (row["state"], row["end_reason"]) == (
                        "ended",
                        "matchmaker shutting down",
                    )

                # In the meantime nothing was lost: every wait is still open, with its ticket.
                open_now = {
                    r["user_id"]: r["ticket_id"]
                    for r in await db.fetch("SELECT user_id, ticket_id FROM tickets WHERE closed_at IS NULL")
                }
                assert open_now == {u: t for u, (t, _) in load.before.items()}

                first_match_s = await load.partners_arrive(survivor, stopped, owner_went=victim == "owner") - stop_wall
                print(
                    f"\n{victim} stopped (SIGTERM): survivor holds the shard lock {takeover_s * 1000:.0f} ms; "
                    f"process exited {exit_s * 1000:.0f} ms; first match after it {first_match_s * 1000:.0f} ms; "
                    f"reconnects per waiting user {load.reconnects()}"
                )
                await load.tickets_were_kept()
                calls = await db.fetch("SELECT user_a, user_b FROM calls")
                assert all(c["user_a"] != c["user_b"] for c in calls)
                assert len(calls) == 1 + len(load.waiters)
            finally:
                await load.close()


async def test_the_web_gateway_opens_the_next_session_on_the_replica_that_is_left(
    database_url: str, tmp_path: Path
) -> None:
    """The gateway in front of both replicas (as `duet up` runs it): the owner stops cleanly; a page's
    open session is told in words, and the page's next session opens on the survivor, through one
    WebSocket, while the shard is still being taken over."""
    async with scratch_database(database_url, prefix="cleanstopweb") as dsn:
        cluster = LocalCluster(state_dir=tmp_path / "state", database=dsn, regions=REGIONS, matchmakers=2)
        async with cluster as info:
            db = await asyncpg.connect(dsn)
            try:
                owner = await shard_owner(db)
                assert owner in info.matchmakers
                survivor = next(a for a in info.matchmakers if a != owner)
                async with (
                    WebServer([owner, survivor], listen="127.0.0.1:0") as url,
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
                ):
                    session_url = url.replace("http://", "ws://") + "session?token=" + info.user_token("web-ana")
                    hello = json.dumps({"hello": {"displayName": "Ana"}})
                    async with http.ws_connect(session_url) as ws:
                        await ws.send_str(hello)
                        assert "edgeAssigned" in json.loads((await ws.receive(timeout=10)).data)
                        stop_at = time.monotonic()
                        os.kill(info.matchmaker_pids[owner], signal.SIGTERM)
                        closed = json.loads((await ws.receive(timeout=10)).data)["closed"]
                        assert closed["code"] == "UNAVAILABLE" and "reconnect" in closed["message"], closed
                    async with http.ws_connect(session_url) as ws:
                        await ws.send_str(hello)
                        frame = json.loads((await ws.receive(timeout=20)).data)
                        assert "edgeAssigned" in frame, frame
                        opened_s = time.monotonic() - stop_at
                    print(f"\nweb session open again {opened_s * 1000:.0f} ms after the owner's SIGTERM")
                    assert await shard_owner(db) == survivor
            finally:
                await db.close()
