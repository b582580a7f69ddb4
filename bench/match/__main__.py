"""make bench-match: matching throughput and time to match with 10,000 waiting, committed to PostgreSQL.

Fills one matchmaker (the production core, its writes grouped into
transactions by GroupCommitStore) with waiting users of realistic preference
mixes, then lets newcomers arrive for whom a compatible partner is waiting,
and measures matches per second and each newcomer's time from FindPartner to
its match committed. In the same run, on a fresh database with the same
waiting users and the first of the same newcomers, the pool's search is
replaced by a naive linear scan under the same rules. Every match is checked
against the rules, and so is every newcomer left waiting (nobody compatible may
be waiting beside it); a violation makes the exit status 1. Call set-up at the edges (routing, bridging, media) is not
measured: the edges and the routing service are in-memory fakes.
Prints progress on stderr, a table, and last one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import sys
import time
from pathlib import Path

from bench.match.durable import RunResult, run
from bench.match.population import make_population
from duet.services.devkit.embedded_postgres import open_database
from duet.services.devkit.errors import SetupError
from duet.services.devkit.scratch_database import scratch_database
from duet.services.matchmaker.gc_policy import GcPolicy


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.match", description=__doc__.split("\n\n")[0])
    p.add_argument("--waiting", type=int, default=10_000, help="users waiting in the pool when newcomers start (default: %(default)s)")  # fmt: skip
    p.add_argument("--newcomers", type=int, default=3000, help="newcomers, each with a compatible partner waiting (default: %(default)s)")  # fmt: skip
    p.add_argument("--naive-newcomers", type=int, default=300, help="of those, how many the naive scan serves (default: %(default)s)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=32, help="newcomers' FindPartner in flight at once (default: %(default)s)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="2,000 waiting, 500 newcomers, 100 for the naive scan")
    p.add_argument("--seed", type=int, default=1, help="the population's random seed (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds a newcomer waits for its match (default: %(default)s)")  # fmt: skip
    p.add_argument("--profile", type=Path, default=None, help="write cProfile stats of the indexed run's measured part here, and print its top entries on stderr")  # fmt: skip
    p.add_argument("--gc-default", action="store_true", help="for comparison: the interpreter's default collector policy instead of the matchmaker server's (services/matchmaker/gc_policy.py)")  # fmt: skip
    p.add_argument("--state-dir", type=Path, default=Path(".duet"), help="where the private PostgreSQL lives (default: %(default)s)")  # fmt: skip
    p.add_argument("--database-url", default=None, help="PostgreSQL server to use (default: $DUET_DATABASE_URL, else a private one)")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.waiting, args.newcomers, args.naive_newcomers = 2000, 500, 100
    if args.waiting < 1 or args.newcomers < 1:
        p.error("--waiting and --newcomers must be 1 or more")
    if args.newcomers > args.waiting:
        p.error(f"--newcomers ({args.newcomers}) cannot exceed --waiting ({args.waiting}): each is made for a different waiting user")  # fmt: skip
    if args.naive_newcomers < 0 or args.concurrency < 1:
        p.error("--naive-newcomers must be 0 or more and --concurrency 1 or more")
    args.naive_newcomers = min(args.naive_newcomers, args.newcomers)
    return args


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def table(results: list[RunResult]) -> str:
    head = f"{'search':<8} {'waiting':>7} {'newcomers':>9} {'matched':>7} {'matches/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'writes/commit':>13} {'committed':>9} {'cpu us/match':>14}"  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in results:
        t = r.time_to_match_ms
        lines.append(
            f"{r.strategy:<8} {r.waiting:>7} {r.newcomers:>9} {r.matched:>7} {r.matches_per_s:>10.0f} "
            f"{percentile(t, 50):>8.2f} {percentile(t, 99):>8.2f} {(t[-1] if t else 0):>8.2f} "
            f"{r.group.mean_group:>13.1f} {r.committed_calls:>9} "
            f"{r.extra['cpu_us_per_match']:>7.0f}+{r.extra['db_cpu_us_per_match']:<6.0f}"
        )
    lines.append(
        "cpu us/match: CPU time of this process (the matchmaker: core, pool, group commit, and the bench's "
        "clients) + of its PostgreSQL server processes, per match, over the measured part."
    )
    lines.append(
        "time to match: FindPartner at the matchmaker -> Matched, sent after the match's call record and both "
        "tickets were committed to PostgreSQL; call set-up at the edges (route, bridge, media) is not included "
        "(in-memory fake edges and routing)."
    )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    progress(f"planning {args.waiting} waiting users and {args.newcomers} newcomers (seed {args.seed})")
    t0 = time.perf_counter()
    try:
        population = make_population(args.seed, args.waiting, args.newcomers)
    except RuntimeError as exc:
        print(f"bench-match: {exc}; ask for fewer newcomers per waiting user (--newcomers)", file=sys.stderr)
        return 2
    progress(
        f"planned in {time.perf_counter() - t0:.1f} s: {population.candidates_drawn} candidates drawn, "
        f"{len(population.blocks)} blocked pairs, {len(population.met)} recent pairs"
    )
    results: list[RunResult] = []
    try:
        async with open_database(args.database_url, args.state_dir) as db:
            if db.describe():
                progress(db.describe() or "")
            async with scratch_database(db.url, prefix="bench_match") as dsn:
                profiler = cProfile.Profile() if args.profile else None
                results.append(
                    await run(
                        dsn,
                        population,
                        population.newcomers,
                        strategy="indexed",
                        concurrency=args.concurrency,
                        timeout_s=args.timeout,
                        progress=progress,
                        profiler=profiler,
                        gc_policy=None if args.gc_default else GcPolicy(),
                    )
                )
                if profiler is not None:
                    profiler.dump_stats(args.profile)
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
                    progress(out.getvalue())
            if args.naive_newcomers:
                async with scratch_database(db.url, prefix="bench_match") as dsn:
                    results.append(
                        await run(
                            dsn,
                            population,
                            population.newcomers[: args.naive_newcomers],
                            strategy="naive",
                            concurrency=args.concurrency,
                            timeout_s=args.timeout,
                            progress=progress,
                            gc_policy=None if args.gc_default else GcPolicy(),
                        )
                    )
    except SetupError as exc:
        print(f"bench-match: PostgreSQL did not start: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    failed = False
    for r in results:
        for v in r.violations[:20]:
            print(f"VIOLATION ({r.strategy}): {v}")
        if r.violations:
            print(f"{r.strategy}: {len(r.violations)} rule violations")
            failed = True
        if r.unmatched:
            # Checked above: nobody compatible was left waiting beside them (else that is a violation).
            print(
                f"{r.strategy}: {len(r.unmatched)} newcomers found their partner taken by an earlier newcomer and "
                f"nobody else compatible waiting (not counted): {', '.join(r.unmatched[:10])}"
            )
        if r.committed_calls != r.extra["calls_expected"] or r.committed_matched_tickets != 2 * r.committed_calls:
            print(
                f"{r.strategy}: PostgreSQL holds {r.committed_calls} of {r.extra['calls_expected']:.0f} call records and "
                f"{r.committed_matched_tickets} tickets closed as matched (expected twice the calls)"
            )
            failed = True
    indexed = results[0]
    naive = results[1] if len(results) > 1 else None
    summary = {
        "waiting": indexed.waiting,
        "matches_per_s": round(indexed.matches_per_s, 1),
        "time_to_match_p50_ms": round(percentile(indexed.time_to_match_ms, 50), 3),
        "time_to_match_p99_ms": round(percentile(indexed.time_to_match_ms, 99), 3),
        "naive_matches_per_s": round(naive.matches_per_s, 1) if naive else None,
        "speedup_vs_naive": round(indexed.matches_per_s / naive.matches_per_s, 1)
        if naive and naive.matches_per_s
        else None,
    }
    print(json.dumps(summary))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print("bench-match: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
