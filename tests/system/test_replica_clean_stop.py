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

from duet.services.client import DuetClient
from duet.services.client.inbox import DuetClientError
from duet.services.client.preferences import MatchPreferences
from duet.services.client.stages import CallResult
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import LocalCluster
from duet.services.devkit.scratch_database import scratch_database
from duet.services.devkit.synthetic_media import synthetic_client
from duet.services.web.app import WebServer
from tests.system.test_replicas import LANGUAGES, REGIONS, shard_owner

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
            db = await asyncpg.connect(dsn)
            clients: list[DuetClient] = []
            try:
                owner = await shard_owner(db)
                assert owner in info.matchmakers
                other = next(a for a in info.matchmakers if a != owner)
                stopped, survivor = (owner, other) if victim == "owner" else (other, owner)

                def client(name: str, i: int, first: str, languages: tuple[str, ...]) -> DuetClient:
                    region = REGIONS[i % len(REGIONS)]
                    c = synthetic_client(
                        [first, *(a for a in info.matchmakers if a != first)],
                        name,
                        name,
                        tag=len(clients) + 1,
                        client_ip=DEMO_CLIENT_IPS[region],
                        token=info.user_tokens(name),
                        preferences=MatchPreferences(languages=languages),
                        match_timeout=60.0,
                        frame_timeout=20.0,
                        rpc_timeout=20.0,
                    )
                    clients.append(c)
                    return c

                # Half dial the replica that stops first, half the other (their streams are forwarded).
                talkers = [client(f"talk-{i}", i, owner if i % 2 == 0 else other, ("en",)) for i in range(2)]
                waiters = [
                    client(f"wait-{i}", i, owner if i % 2 == 0 else other, (lang,)) for i, lang in enumerate(LANGUAGES)
                ]
                await asyncio.gather(*(c.connect() for c in talkers + waiters))
                early = await asyncio.gather(*(c.find_partner() for c in talkers))
                assert early[0].call_id == early[1].call_id
                finds = [asyncio.create_task(c.find_partner(), name=c.user_id) for c in waiters]
                deadline = time.monotonic() + 20
                while True:
                    rows = await db.fetch("SELECT user_id, ticket_id, queued_at FROM tickets WHERE closed_at IS NULL")
                    if len(rows) == len(waiters):
                        break
                    assert time.monotonic() < deadline, f"only {len(rows)} of {len(waiters)} waiting"
                    await asyncio.sleep(0.05)
                before = {r["user_id"]: (r["ticket_id"], r["queued_at"]) for r in rows}

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
                    row = await db.fetchrow("SELECT state, end_reason FROM calls WHERE call_id = $1", early[0].call_id)
                    assert row is not None and (row["state"], row["end_reason"]) == (
                        "ended",
                        "matchmaker shutting down",
                    )

                # In the meantime nothing was lost: every wait is still open, with its ticket.
                open_now = {
                    r["user_id"]: r["ticket_id"]
                    for r in await db.fetch("SELECT user_id, ticket_id FROM tickets WHERE closed_at IS NULL")
                }
                assert open_now == {u: t for u, (t, _) in before.items()}

                partners = [client(f"partner-{i}", i + 1, survivor, (lang,)) for i, lang in enumerate(LANGUAGES)]
                await asyncio.gather(*(c.connect() for c in partners))
                partner_results = await asyncio.gather(*(c.find_partner() for c in partners))
                waited: list[CallResult | BaseException] = await asyncio.gather(*finds, return_exceptions=True)
                failures = {w.user_id: r for w, r in zip(waiters, waited, strict=True) if isinstance(r, BaseException)}
                assert not failures, f"waiting users not matched after the clean stop: {failures}"
                results = [r for r in waited if isinstance(r, CallResult)]
                first_match_s = min(r.stages["matched"] for r in results) / 1000 - stop_wall
                print(
                    f"\n{victim} stopped (SIGTERM): survivor holds the shard lock {takeover_s * 1000:.0f} ms; "
                    f"process exited {exit_s * 1000:.0f} ms; first match after it {first_match_s * 1000:.0f} ms; "
                    f"reconnects per waiting user {[w.reconnects for w in waiters]}"
                )
                for w, r, p in zip(waiters, results, partner_results, strict=True):
                    if victim == "owner" or w.matchmaker_addresses[0] == stopped:
                        assert w.reconnects >= 1, f"{w.user_id} never lost its stream?"
                    assert r.call_id == p.call_id, f"{w.user_id} was not matched with the partner speaking its language"
                for user, (ticket_id, queued_at) in before.items():
                    row = await db.fetchrow("SELECT outcome, queued_at FROM tickets WHERE ticket_id = $1", ticket_id)
                    assert row is not None and row["outcome"] == "matched", (user, dict(row) if row else None)
                    assert row["queued_at"] == queued_at
                assert not await db.fetch("SELECT ticket_id FROM tickets WHERE closed_at IS NULL")
                calls = await db.fetch("SELECT user_a, user_b FROM calls")
                assert all(c["user_a"] != c["user_b"] for c in calls)
                assert len(calls) == 1 + len(waiters)
            finally:
                await db.close()
                for c in clients:
                    try:
                        await c.leave()
                    except DuetClientError:
                        pass


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
