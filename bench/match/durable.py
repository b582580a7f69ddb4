"""One measured run: a Matchmaker over PostgreSQL with the waiting pool filled, then the newcomers.

The matchmaker is the production core (``core.Matchmaker``) with its store
the PostgreSQL ``Store`` behind ``GroupCommitStore``: every ticket opened and
closed and every call record is committed before the client is told, as in
production. Only call set-up at the edges is not measured: routing and edges
are the in-memory fakes (``fakes/``), which answer at once, so "matched"
here is the match committed, before any media moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.gc_pauses import GcPauses
from bench.match.naive_scan import NaiveScanPool
from bench.match.population import REGIONS, Population, Profile
from bench.match.verify import Rules, violations
from duet.routing.reference import region_sites
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.events import Matched, NoEdge, SessionClosed, SessionEvent, ShardMoved
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemorySafetyStore
from duet.services.matchmaker.gc_policy import FrozenHeap, GcPolicy
from duet.services.matchmaker.metrics import MatchmakerMetrics
from duet.services.matchmaker.ports import EdgeInfo, EdgeState
from duet.services.matchmaker.session_state import ClientSession
from duet.services.store.group_commit import GroupCommitStore, GroupStats
from duet.services.store.postgres import Store

Progress = Callable[[str], None]


def edges() -> list[EdgeInfo]:
    """One edge per region, each reached from its own made-up address prefix ("<n>.0.0.")."""
    sites = region_sites()
    return [
        EdgeInfo(f"{sites[r].edge_prefix}-1", n, r, f"127.0.0.1:{n}", f"127.0.0.1:{n}", "127.0.0.1", EdgeState.ACTIVE)
        for n, r in enumerate(REGIONS, start=1)
    ]


def client_ip(region: str) -> str:
    return f"{list(REGIONS).index(region) + 1}.0.0.7"


class MatchWatch:
    """A session's outbox that keeps only what the bench needs: when Matched came, and what it said."""

    def __init__(self) -> None:
        self.matched: asyncio.Future[tuple[float, Matched]] = asyncio.get_running_loop().create_future()
        self.times_matched = 0

    def put_nowait(self, event: SessionEvent | SessionClosed | NoEdge | ShardMoved, /) -> None:
        if isinstance(event, Matched):
            self.times_matched += 1
            if not self.matched.done():
                self.matched.set_result((time.perf_counter(), event))


@dataclass
class RunResult:
    strategy: str  # "indexed" or "naive"
    waiting: int  # in the pool when the newcomers started
    newcomers: int
    matched: int
    elapsed_s: float
    time_to_match_ms: list[float]
    violations: list[str]
    unmatched: list[str]
    committed_calls: int  # call rows in PostgreSQL for the newcomers' matches
    committed_matched_tickets: int  # their tickets closed as matched
    group: GroupStats
    fill_s: float
    left_waiting: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def matches_per_s(self) -> float:
        return self.matched / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def _open(mm: Matchmaker, p: Profile) -> tuple[ClientSession, MatchWatch]:
    watch = MatchWatch()
    session = await mm.open_session(p.user_id, p.user_id, client_ip(p.region), watch)
    await mm.attach_leg(session, p.offer_sdp)
    return session, watch


async def postgres_backends(store: Store) -> list[int]:
    """The server processes of this database's connections (the store's pool), to read their CPU time."""
    async with store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return [r["pid"] for r in rows]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of these processes (0 for one that cannot be read: another machine, or gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


async def settle(mm: Matchmaker, config: MatchConfig, progress: Progress, strategy: str) -> None:
    """Wait until every waiting ticket has passed its last relaxation step and the core's timer has
    looked at each again (finding nobody: they fit nobody among themselves).

    Filled in a few seconds, the pool's 10,000 tickets would all reach each step within those few
    seconds, in the middle of the measurement, and the timer would search for each of them at once: a
    burst that a pool filled over time never has. Waited out, the pool is what a busy peak's surplus
    is: users who have waited a while, with every soft criterion relaxed.
    """
    last_step_s = max(config.relax.steps_s())
    youngest = max(t.queued_at for t in mm.pool.waiting())
    wait_s = (youngest + last_step_s * 1000 - mm.now_ms()) / 1000 + 0.5
    progress(f"{strategy}: waiting {max(0.0, wait_s):.0f} s for the pool's relaxation steps to pass")
    await asyncio.sleep(max(0.0, wait_s))
    # The timer runs its re-looks back to back: idle again once a short sleep takes no longer than asked.
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        if time.perf_counter() - t < 0.07:
            return


T = TypeVar("T")


async def _gather_bounded(coros: Sequence[Coroutine[Any, Any, T]], limit: int) -> list[T]:
    """Await every coroutine, at most ``limit`` at once; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(c: Coroutine[Any, Any, T]) -> T:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def run(
    dsn: str,
    population: Population,
    newcomers: Sequence[Profile],
    *,
    strategy: str,
    concurrency: int,
    timeout_s: float,
    progress: Progress,
    profiler: cProfile.Profile | None = None,
    gc_policy: GcPolicy | None = None,
) -> RunResult:
    """``gc_policy``: the collector policy the matchmaker server applies from its start (None: the
    interpreter's default, for comparison)."""
    async with contextlib.AsyncExitStack() as stack:
        heap = None if gc_policy is None else await stack.enter_async_context(FrozenHeap(gc_policy).running())
        config = MatchConfig()
        store = await Store.open(dsn, max_size=4)
        grouped = GroupCommitStore(store)
        grouped.start()
        safety = InMemorySafetyStore()
        for pair in population.blocks:
            a, b = sorted(pair)
            await safety.add_block(a, b, "earlier-call")
        # The production telemetry (the histograms the server exports), observed on every match.
        metrics = MatchmakerMetrics(lambda: mm.pool.waiting())
        mm = Matchmaker(grouped, FakeRouting(edges(), ingress_by_prefix={client_ip(r)[:-1]: e.edge_id for r, e in zip(REGIONS, edges(), strict=True)}), FakeEdges(), config=config, safety=safety, telemetry=metrics)  # fmt: skip
        pool = NaiveScanPool(compare=config.compare)
        mm.pool = pool
        mm.start()
        try:
            # The waiting users: sessions with warm legs, then their tickets, in order (not measured).
            t0 = time.perf_counter()
            sessions = await _gather_bounded([_open(mm, p) for p in population.waiting], 64)
            queued = 0

            async def queue(p: Profile, session: ClientSession) -> None:
                nonlocal queued
                await mm.find_partner(session, p.preferences)
                if session.ticket is None:
                    raise RuntimeError(
                        f"waiting user {p.user_id} was matched while filling the pool: the plan is wrong"
                    )
                queued += 1
                if queued % 2000 == 0:
                    progress(f"{strategy}: {queued} waiting")

            # Several at once so their tickets' writes group; they fit nobody among themselves, so order is moot.
            await _gather_bounded([queue(p, s) for p, (s, _) in zip(population.waiting, sessions, strict=True)], 64)
            for pair in population.met:
                a, b = sorted(pair)
                mm.history.note_met(a, b)
            fill_s = time.perf_counter() - t0
            await settle(mm, config, progress, strategy)
            watches = {p.user_id: w for p, (_, w) in zip(population.waiting, sessions, strict=True)}
            arriving = await _gather_bounded([_open(mm, p) for p in newcomers], 64)
            for p, (_, w) in zip(newcomers, arriving, strict=True):
                watches[p.user_id] = w
            waiting_at_start = len(mm.pool)
            progress(f"{strategy}: {waiting_at_start} waiting in {fill_s:.1f} s; {len(newcomers)} newcomers arrive")
            if strategy == "naive":
                pool.scan_for = {p.user_id for p in newcomers}
            groups_before = (grouped.stats.groups, grouped.stats.writes)
            backends = await postgres_backends(store)
            cpu_before = (time.process_time(), cpu_seconds(backends))

            # The measured part: each newcomer's FindPartner, up to ``concurrency`` at once, until its Matched.
            sem = asyncio.Semaphore(concurrency)
            took: dict[str, float] = {}
            last_match = 0.0
            done = 0

            async def arrive(p: Profile, session: ClientSession, watch: MatchWatch) -> None:
                nonlocal done, last_match
                async with sem:
                    start = time.perf_counter()
                    await mm.find_partner(session, p.preferences)
                    if not watch.matched.done():  # usually Matched came before find_partner returned
                        try:
                            await asyncio.wait_for(asyncio.shield(watch.matched), timeout_s)
                        except TimeoutError:
                            return
                    at, _ = watch.matched.result()
                    took[p.user_id] = (at - start) * 1000
                    last_match = max(last_match, at)
                    done += 1
                    if done % 1000 == 0:
                        progress(f"{strategy}: {done} of {len(newcomers)} matched")

            reclaims_before = heap.stats.reclaims if heap is not None else 0
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            with GcPauses() as pauses:
                await asyncio.gather(*(arrive(p, s, w) for p, (s, w) in zip(newcomers, arriving, strict=True)))
            if profiler is not None:
                profiler.disable()
            if pauses.ms:
                progress(
                    f"{strategy}: the garbage collector ran {len(pauses.ms)} times while newcomers arrived "
                    f"(full collections: {pauses.full}), {sum(pauses.ms):.0f} ms in all, the longest {max(pauses.ms):.0f} ms"
                )
            if heap is not None:
                # Not measured: what the next reclaim would free, the policy's memory cost (gc_policy.py).
                freed = heap.reclaim()
                progress(
                    f"{strategy}: gc policy: {heap.stats.reclaims - reclaims_before - 1} reclaims while newcomers arrived; "
                    f"one after them took {heap.stats.last_reclaim_ms:.0f} ms and freed {freed} unreachable objects "
                    f"({freed / max(1, done):.1f} per match)"
                )
            # To the last match: a newcomer whose partner was taken waits out its timeout, which is not matching.
            elapsed = (last_match or time.perf_counter()) - started
            pool.scan_for = set()
            cpu_self = time.process_time() - cpu_before[0]
            cpu_db = cpu_seconds(backends) - cpu_before[1]
            stats = GroupStats(grouped.stats.groups - groups_before[0], grouped.stats.writes - groups_before[1])

            # Every newcomer's match against the rules, and in PostgreSQL.
            profiles = {p.user_id: p for p in (*population.waiting, *newcomers)}
            rules = Rules(
                config.relax.interests_optional_after_s * 1000, config.relax.anywhere_after_s * 1000, config.near_rtt_ms
            )
            found = [
                f"{user} was matched {w.times_matched} times" for user, w in watches.items() if w.times_matched > 1
            ]
            call_ids: list[str] = []
            for p in newcomers:
                w = watches[p.user_id]
                if not w.matched.done():
                    continue
                _, event = w.matched.result()
                partner = profiles[event.partner_display_name]
                _, partners_event = watches[partner.user_id].matched.result()
                call_ids.append(event.call_id)
                found += [
                    f"{p.user_id} <-> {partner.user_id}: {v}"
                    for v in violations(
                        p,
                        event.stages["queued"],
                        partner,
                        partners_event.stages["queued"],
                        event.stages["matched"],
                        blocks=population.blocks,
                        met=population.met,
                        rules=rules,
                    )
                ]
            # A newcomer left waiting must have nobody compatible waiting (judged a second ago, in case a
            # relaxation step has just passed and the core's timer has yet to look again).
            unmatched = [p for p in newcomers if p.user_id not in took]
            judged_at = mm.now_ms() - 1000
            waiting_now = mm.pool.waiting()
            for p in unmatched:
                mine = mm.pool.ticket_of(p.user_id)
                if mine is None:
                    found.append(f"{p.user_id} neither matched nor waiting")
                    continue
                for t in waiting_now:
                    if t.user_id != p.user_id and not violations(p, mine.queued_at, profiles[t.user_id], t.queued_at, judged_at, blocks=population.blocks, met=population.met, rules=rules):  # fmt: skip
                        found.append(f"{p.user_id} left waiting beside a compatible {t.user_id}")
                        break
            unique_calls = sorted(set(call_ids))
            calls = await store.pool.fetchval(
                "SELECT count(*) FROM calls WHERE call_id = ANY($1::text[])", unique_calls
            )
            tickets = await store.pool.fetchval(
                "SELECT count(*) FROM tickets t JOIN calls c ON t.user_id IN (c.user_a, c.user_b) "
                "WHERE c.call_id = ANY($1::text[]) AND t.outcome = 'matched'",
                unique_calls,
            )
            return RunResult(
                strategy=strategy,
                waiting=waiting_at_start,
                newcomers=len(newcomers),
                matched=len(took),
                elapsed_s=elapsed,
                time_to_match_ms=sorted(took.values()),
                violations=found,
                unmatched=[p.user_id for p in unmatched],
                committed_calls=int(calls),
                committed_matched_tickets=int(tickets),
                group=stats,
                fill_s=fill_s,
                left_waiting=len(mm.pool),
                extra={
                    "calls_expected": float(len(unique_calls)),
                    "cpu_us_per_match": cpu_self * 1e6 / max(1, len(took)),
                    "db_cpu_us_per_match": cpu_db * 1e6 / max(1, len(took)),
                },
            )
        finally:
            # Close every session at once (their writes group), then the core's timer.
            await asyncio.gather(*(mm.close_session(s, "the bench is over") for s in list(mm.sessions.values())))
            await mm.stop()
            await grouped.close()
            await store.close()
