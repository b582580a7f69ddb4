"""What a match cannot cost less than in this process: the parts every match pays, measured alone.

``python -m bench.match.floor`` (no PostgreSQL, a few seconds) prints, in µs of CPU per operation:

- ``pool_search``: the pool's search for the bench's newcomers, in memory (10,000 waiting, the
  bench's population; ``WaitingPool.offer`` one after another, nothing else; the heap frozen as the
  matchmaker's collector policy keeps it);
- ``future_round_trip``: one write's trip through a group-commit-shaped writer with no database: a
  future queued, a writer task resolving a whole queue's worth, the caller's task woken;
- ``task``: one ``asyncio.Task`` created, run to its end and awaited (the call set-up's route and
  bridges each take one);
- ``per_match``: the sum a match pays at the least: one search, two writes (open the ticket;
  close the pair with its call record), two tasks (the bridges; the route is asked in the caller's).

The bench's own CPU per match (``make bench-match``) against ``per_match`` says how much of it is
plumbing beyond these; PostgreSQL's side is the bench's second CPU figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time

from bench.match.population import _planning_ticket, make_population
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.matchmaker.pool import WaitingPool
from duet.services.matchmaker.reference_latency import ReferenceLatency
from duet.services.matchmaker.rules.base import PairContext


def pool_search_us(waiting: int, newcomers: int, seed: int) -> float:
    pop = make_population(seed, waiting, newcomers)
    config = MatchConfig()
    history = InMemoryPairHistory()
    for a, b in pop.blocks:
        history.add_block(a, b)
    for a, b in pop.met:
        history.note_met(a, b)
    now = time.time() * 1000
    ctx = PairContext(now, config.relax, ReferenceLatency(), history, config.near_rtt_ms)
    pool = WaitingPool(compare=config.compare)
    # Waited a minute, like the bench's settled pool: every soft criterion relaxed.
    for i, p in enumerate(pop.waiting):
        pool.offer(_planning_ticket(p, now - 60_000 - (waiting - i)), ctx)
    arriving = [_planning_ticket(p, now) for p in pop.newcomers]
    # The long-lived heap out of the collector's sight, as the matchmaker's policy keeps it (gc_policy.py).
    gc.collect()
    gc.freeze()
    try:
        started = time.process_time()
        for t in arriving:
            pool.offer(t, ctx)
        return (time.process_time() - started) * 1e6 / len(arriving)
    finally:
        gc.unfreeze()


async def future_round_trip_us(writes: int, in_flight: int) -> float:
    queue: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def writer() -> None:
        while True:
            group = [await queue.get()]
            while not queue.empty():
                group.append(queue.get_nowait())
            await asyncio.sleep(0)  # the commit's await
            for f in group:
                f.set_result(None)

    async def caller(n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            f: asyncio.Future[None] = loop.create_future()
            queue.put_nowait(f)
            await f

    task = asyncio.create_task(writer())
    started = time.process_time()
    await asyncio.gather(*(caller(writes // in_flight) for _ in range(in_flight)))
    took = time.process_time() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return took * 1e6 / (writes // in_flight * in_flight)


async def task_us(n: int) -> float:
    async def step() -> None:
        await asyncio.sleep(0)

    started = time.process_time()
    for _ in range(n // 3):
        await asyncio.gather(step(), step(), step())
    return (time.process_time() - started) * 1e6 / (n // 3 * 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.match.floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--waiting", type=int, default=10_000)
    p.add_argument("--newcomers", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    search = pool_search_us(args.waiting, args.newcomers, args.seed)
    trip = asyncio.run(future_round_trip_us(30_000, 32))
    task = asyncio.run(task_us(30_000))
    floor = {"pool_search_us": round(search, 1), "future_round_trip_us": round(trip, 1), "task_us": round(task, 1)}
    # From the rounded parts, so that the printed figures add up.
    floor["per_match_us"] = round(floor["pool_search_us"] + 2 * floor["future_round_trip_us"] + 2 * floor["task_us"], 1)
    floor["matches_per_s_at_most"] = round(1e6 / floor["per_match_us"])
    print(json.dumps(floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
