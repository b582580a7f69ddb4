"""The load the replica system tests stop or kill a matchmaker under, and what they check after it.

Two users in a live call, and one waiting user per language of ``LANGUAGES``
(only their partner-to-be speaks it, so nobody waiting matches before the
replica goes); even users dial the shard's owner first, odd ones the other
replica (whose streams are forwarded). Afterwards, partners arrive at the
survivor, one per language: every waiting user must be matched with theirs,
on the ticket they had (same id, same queued_at).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from duet.services.client import DuetClient
from duet.services.client.inbox import DuetClientError
from duet.services.client.preferences import MatchPreferences
from duet.services.client.stages import CallResult
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo
from duet.services.devkit.synthetic_media import synthetic_client
from duet.services.matchmaker.replicas.pg_ownership import SHARD_NAMESPACE
from duet.services.matchmaker.replicas.shards import DEFAULT_SHARD, lock_key

REGIONS = ("Frankfurt", "Virginia")
# One language per waiting user that only their partner-to-be speaks: nobody waiting can match before the stop.
LANGUAGES = ("de", "fr", "es", "it")

OWNER_SQL = (
    "SELECT s.address FROM matchmaker_shards s JOIN pg_locks l ON l.pid = s.backend_pid "
    "WHERE s.shard = $1 AND l.locktype = 'advisory' AND l.granted AND l.classid = $2 AND l.objid = $3 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def shard_owner(conn: asyncpg.Connection) -> str | None:
    """The address of the replica holding the world shard's lock now (None: nobody)."""
    address: str | None = await conn.fetchval(OWNER_SQL, DEFAULT_SHARD, SHARD_NAMESPACE, lock_key(DEFAULT_SHARD))
    return address


@dataclass
class ReplicaLoad:
    info: ClusterInfo
    db: asyncpg.Connection
    clients: list[DuetClient] = field(default_factory=list)
    talkers: list[DuetClient] = field(default_factory=list)
    waiters: list[DuetClient] = field(default_factory=list)
    early: list[CallResult] = field(default_factory=list)  # the talkers' call
    finds: list[asyncio.Task[CallResult]] = field(default_factory=list)  # the waiters' FindPartner
    before: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # waiter -> (ticket id, queued_at)

    def client(self, name: str, i: int, first: str, language: str) -> DuetClient:
        """An SDK client dialling ``first``, then the other replicas (the SDK reconnects over the list)."""
        c = synthetic_client(
            [first, *(a for a in self.info.matchmakers if a != first)],
            name,
            name,
            tag=len(self.clients) + 1,
            client_ip=DEMO_CLIENT_IPS[REGIONS[i % len(REGIONS)]],
            token=self.info.user_tokens(name),
            preferences=MatchPreferences(languages=(language,)),
            match_timeout=60.0,
            frame_timeout=20.0,
            rpc_timeout=20.0,
        )
        self.clients.append(c)
        return c

    async def start(self, owner: str, other: str) -> None:
        """The call, then the waiting users, until every one of their tickets is open in the store."""
        self.talkers = [self.client(f"talk-{i}", i, owner if i % 2 == 0 else other, "en") for i in range(2)]
        self.waiters = [
            self.client(f"wait-{i}", i, owner if i % 2 == 0 else other, lang) for i, lang in enumerate(LANGUAGES)
        ]
        await asyncio.gather(*(c.connect() for c in self.talkers + self.waiters))
        self.early = list(await asyncio.gather(*(c.find_partner() for c in self.talkers)))
        assert self.early[0].call_id and self.early[0].call_id == self.early[1].call_id
        self.finds = [asyncio.create_task(c.find_partner(), name=c.user_id) for c in self.waiters]
        deadline = time.monotonic() + 20
        while True:
            rows = await self.db.fetch("SELECT user_id, ticket_id, queued_at FROM tickets WHERE closed_at IS NULL")
            if len(rows) == len(self.waiters):
                break
            assert time.monotonic() < deadline, f"only {len(rows)} of {len(self.waiters)} waiting"
            await asyncio.sleep(0.05)
        self.before = {r["user_id"]: (r["ticket_id"], r["queued_at"]) for r in rows}

    async def partners_arrive(self, survivor: str, gone: str, *, owner_went: bool) -> float:
        """A partner per language at the survivor; every waiting user matched with theirs, having
        reconnected if its stream was on the replica that went (``gone``; all of them if the owner
        went). Returns the wall-clock time of the first of those matches (epoch s)."""
        partners = [self.client(f"partner-{i}", i + 1, survivor, lang) for i, lang in enumerate(LANGUAGES)]
        await asyncio.gather(*(c.connect() for c in partners))
        partner_results = await asyncio.gather(*(c.find_partner() for c in partners))
        waited: list[CallResult | BaseException] = await asyncio.gather(*self.finds, return_exceptions=True)
        failures = {w.user_id: r for w, r in zip(self.waiters, waited, strict=True) if isinstance(r, BaseException)}
        assert not failures, f"waiting users not matched after the replica went: {failures}"
        results = [r for r in waited if isinstance(r, CallResult)]
        for w, r, p in zip(self.waiters, results, partner_results, strict=True):
            if owner_went or w.matchmaker_addresses[0] == gone:
                assert w.reconnects >= 1, f"{w.user_id} never lost its stream?"
            assert r.call_id == p.call_id, f"{w.user_id} was not matched with the partner who speaks its language"
        return min(r.stages["matched"] for r in results) / 1000

    async def tickets_were_kept(self) -> None:
        """Every waiting user's ticket: the same id, closed as matched, with the original queued_at."""
        for user, (ticket_id, queued_at) in self.before.items():
            row = await self.db.fetchrow("SELECT outcome, queued_at FROM tickets WHERE ticket_id = $1", ticket_id)
            assert row is not None and row["outcome"] == "matched", (user, dict(row) if row else None)
            assert row["queued_at"] == queued_at
        assert not await self.db.fetch("SELECT ticket_id FROM tickets WHERE closed_at IS NULL")

    def reconnects(self) -> list[int]:
        return [w.reconnects for w in self.waiters]

    async def close(self) -> None:
        await self.db.close()
        for c in self.clients:
            try:
                await c.leave()
            except DuetClientError:
                pass
