"""make bench-edge: ramp synthetic calls through 1 edge and a 3-edge path, against the bare-loop floor.

Prints a table per scenario, the edge's profile at its highest lossless step,
and last one JSON line (figures defined in docs/benchmarks.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import io
import json
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.edge.cpu import cpu_seconds, run_queue_wait_seconds, udp_receive_buffer_errors
from bench.edge.decodes import decoders_created, install_decode_counter
from bench.edge.processes import REPO_ROOT
from bench.edge.scenarios import EdgePath, Floor, Load, Scenario
from bench.edge.traffic import PACKETS_PER_CALL_DIRECTION, WARMUP_STEP
from bench.loop_lag import Stall

LOSSLESS_MAX = 0.001  # a step is lossless when under 0.1% of its packets are lost ...
# ... and its p99 latency is under this: a packet later than that misses a real receiver's
# jitter buffer, so it is lost to the call (and a growing queue means the loop is behind).
LATE_P99_US = 100_000
GENERATOR_MIN_SENT = 0.97  # the load process is the limit when it sends less than this share of the offered rate
GENERATOR_MAX_CPU = 0.90  # ... or uses more than this share of a core
STRAGGLER_WAIT_S = 0.4
GC_NOTED_MS = 5.0  # a collector pause this long in a window is flagged (it holds every packet in flight)
# A process that waited this share of a window, runnable, for a core is flagged. Some waiting is normal on
# a virtual machine: an idle virtual CPU takes tens of µs to run a woken process, and at thousands of
# wake-ups a second that alone comes to 10-15 % on a quiet machine; a core held by other work shows as more.
WAITED_NOTED_PCT = 25.0
STALL_NOTED_MS = 20.0  # an event-loop stall of a process under test this long is flagged (bench/loop_lag.py)


@dataclass
class Step:
    scenario: str
    calls: int
    seconds: float
    offered_pps: float  # what the calls should send: 2 directions x 150 packets/s each
    sent_pps: float
    forwarded_pps: float  # packets the receiving clients got
    lost: int
    loss: float
    cpu_pct: list[float]  # per process under test (each edge, or the floor loop)
    us_per_packet: float  # CPU of all processes under test per forwarded packet
    latency_p50_us: float  # send -> arrival at the receiving socket (the kernel's time)
    latency_p99_us: float
    read_latency_p99_us: float  # send -> read by the load process: adds the load process's own delay
    kernel_timed: float  # share of the latencies timed by the kernel's arrival time (the rest: at the read)
    generator_cpu_pct: float
    generator_bound: bool
    drops: dict[str, int]  # what the processes under test dropped during the window, by reason
    gc_longest_ms: dict[str, float]  # per process (under test, and "load"): the collector's longest pause
    gc_total_ms: dict[str, float]  # ... and all its pauses together
    stall_longest_ms: dict[str, float]  # per process under test: its event loop's latest wake-up (5 ms or more)
    stall_busy_ms: dict[str, float]  # ... and the CPU it used over that stall (about all of it: busy; little: waiting)
    waited_pct: dict[
        str, float
    ]  # per process (under test, and "load"): % of the window it waited, runnable, for a core
    load_average: float  # the machine's 1-minute load average at the end of the window (2 cores here)

    @property
    def lossless(self) -> bool:
        return self.forwarded_pps > 0 and self.loss < LOSSLESS_MAX and not self.late

    @property
    def late(self) -> bool:
        return not self.latency_p99_us < LATE_P99_US

    @property
    def cpu_fraction(self) -> float:
        return sum(self.cpu_pct) / 100


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


_next_step = WARMUP_STEP + 1


async def measure(scenario: Scenario, load: Load, seconds: float) -> Step:
    global _next_step
    step, _next_step = _next_step, _next_step + 1
    me = os.getpid()
    drops0 = await scenario.drops()
    rcvbuf0 = udp_receive_buffer_errors()
    for child in scenario.children:
        await child.pauses()  # forget what came before the window
    load.gc.take()
    cpu0 = [c.cpu() for c in scenario.children]
    waited0 = [c.waited() for c in scenario.children] + [run_queue_wait_seconds(me)]
    gen0, t0 = cpu_seconds(me), time.perf_counter()
    load.step = step
    await asyncio.sleep(seconds)
    load.step = WARMUP_STEP
    elapsed = time.perf_counter() - t0
    cpu1 = [c.cpu() for c in scenario.children]
    waited1 = [c.waited() for c in scenario.children] + [run_queue_wait_seconds(me)]
    generator = (cpu_seconds(me) - gen0) / elapsed
    gc_by_process = {"load": load.gc.take()}
    stall_longest: dict[str, Stall] = {}
    for child in scenario.children:
        gc_ms, stalls = await child.pauses()
        gc_by_process[child.name] = gc_ms
        if stalls:
            stall_longest[child.name] = max(stalls, key=lambda x: x.late_ms)
    await asyncio.sleep(STRAGGLER_WAIT_S)
    drops = {k: n - drops0.get(k, 0) for k, n in (await scenario.drops()).items() if n > drops0.get(k, 0)}
    if rcvbuf := udp_receive_buffer_errors() - rcvbuf0:
        # A receiver (edge, floor or load process) was off the CPU while its socket buffer filled.
        drops["kernel: socket receive buffer full"] = rcvbuf
    sent = load.sent.get(step, 0)
    received = load.tally.received.get(step, 0)
    latencies = load.tally.latency_us.pop(step, [])
    read_latencies = load.tally.read_latency_us.pop(step, [])
    kernel_timed = load.tally.kernel_timed.pop(step, 0)
    offered = scenario.calls * 2 * PACKETS_PER_CALL_DIRECTION
    cpu = [(b - a) for a, b in zip(cpu0, cpu1, strict=True)]
    return Step(
        scenario=scenario.name,
        calls=scenario.calls,
        seconds=round(elapsed, 2),
        offered_pps=offered,
        sent_pps=round(sent / elapsed, 1),
        forwarded_pps=round(received / elapsed, 1),
        lost=max(sent - received, 0),
        loss=round(max(sent - received, 0) / sent, 5) if sent else 1.0,
        cpu_pct=[round(100 * c / elapsed, 1) for c in cpu],
        us_per_packet=round(1e6 * sum(cpu) / received, 1) if received else float("nan"),
        latency_p50_us=round(_percentile(latencies, 50), 1),
        latency_p99_us=round(_percentile(latencies, 99), 1),
        read_latency_p99_us=round(_percentile(read_latencies, 99), 1),
        kernel_timed=round(kernel_timed / len(latencies), 3) if latencies else 0.0,
        generator_cpu_pct=round(100 * generator, 1),
        generator_bound=sent < GENERATOR_MIN_SENT * offered * elapsed or generator > GENERATOR_MAX_CPU,
        drops=drops,
        gc_longest_ms={name: round(max(ms, default=0.0), 1) for name, ms in gc_by_process.items()},
        gc_total_ms={name: round(sum(ms), 1) for name, ms in gc_by_process.items()},
        stall_longest_ms={name: x.late_ms for name, x in stall_longest.items()},
        stall_busy_ms={name: x.cpu_ms for name, x in stall_longest.items()},
        waited_pct={
            name: round(100 * (b - a) / elapsed, 1)
            for name, a, b in zip([c.name for c in scenario.children] + ["load"], waited0, waited1, strict=True)
        },
        load_average=round(os.getloadavg()[0], 2),
    )


HEADER = (
    f"{'scenario':<12}{'calls':>6}{'offered':>9}{'sent':>9}{'fwd pps':>9}{'loss':>8}{'CPU %':>16}"
    f"{'us/pkt':>8}{'p50 us':>8}{'p99 us':>8}{'read p99':>9}{'gen %':>7}{'load':>6}"
)


def row(s: Step) -> str:
    cpu = "+".join(f"{c:.0f}" for c in s.cpu_pct)
    flag = "  generator-bound" if s.generator_bound else ""
    flag += "  LOSS" if s.loss >= LOSSLESS_MAX else ("  LATE" if s.late else "")
    if s.kernel_timed < 1:
        flag += f"  timed-at-read: {100 * (1 - s.kernel_timed):.0f}%"
    if paused := {name: ms for name, ms in s.gc_longest_ms.items() if ms >= GC_NOTED_MS}:
        flag += "  gc: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in sorted(paused.items()))
    if stalls := {name: ms for name, ms in s.stall_longest_ms.items() if ms >= STALL_NOTED_MS}:
        flag += "  stall: " + ", ".join(
            f"{name} {ms:.0f} ms ({s.stall_busy_ms[name]:.0f} ms CPU)" for name, ms in sorted(stalls.items())
        )
    if waited := {name: pct for name, pct in s.waited_pct.items() if pct >= WAITED_NOTED_PCT}:
        flag += "  waited for a core: " + ", ".join(f"{name} {pct:.0f}%" for name, pct in sorted(waited.items()))
    if s.drops:
        flag += "  dropped: " + ", ".join(f"{reason} {n}" for reason, n in sorted(s.drops.items()))
    return (
        f"{s.scenario:<12}{s.calls:>6}{s.offered_pps:>9.0f}{s.sent_pps:>9.0f}{s.forwarded_pps:>9.0f}"
        f"{100 * s.loss:>7.2f}%{cpu:>16}{s.us_per_packet:>8.1f}{s.latency_p50_us:>8.0f}{s.latency_p99_us:>8.0f}"
        f"{s.read_latency_p99_us:>9.0f}{s.generator_cpu_pct:>7.0f}{s.load_average:>6.1f}{flag}"
    )


async def ramp(
    start: Callable[[], Awaitable[Scenario]], steps: list[int], warmup_s: float, seconds: float, *, stop_at_loss: bool
) -> tuple[list[Step], int]:
    """Measure each step's call count; stop after the first lossy or generator-bound step. Returns steps, decodes."""
    scenario = await start()
    load = Load()
    results: list[Step] = []
    try:
        load.start()
        for calls in steps:
            while scenario.calls < calls:
                await scenario.add_call(load)
            await asyncio.sleep(warmup_s)
            result = await measure(scenario, load, seconds)
            results.append(result)
            print(row(result), flush=True)
            if stop_at_loss and (not result.lossless or result.generator_bound):
                break
        decodes = await scenario.decodes()
    finally:
        await load.stop()
        await scenario.close()
    return results, decodes


async def profile_edge(calls: int, warmup_s: float, seconds: float, out: Path, log_dir: Path) -> str:
    """cProfile inside the bench edge at ``calls`` calls (a window of its own: profiling slows it)."""
    scenario = await EdgePath.start(1, log_dir)
    load = Load()
    try:
        load.start()
        while scenario.calls < calls:
            await scenario.add_call(load)
        await asyncio.sleep(warmup_s)
        edge = scenario.children[0]
        await edge.command(cmd="profile_start")
        await asyncio.sleep(seconds)
        await edge.command(cmd="profile_stop", path=str(out))
    finally:
        await load.stop()
        await scenario.close()
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(25)
    summary = text.getvalue()
    out.with_suffix(".txt").write_text(summary)
    return summary


@dataclass
class Round:
    """The 1-edge path and the SRTP floor measured at the same two rates: best's calls and half of them."""

    edge_best: Step
    floor_best: Step
    edge_half: Step
    floor_half: Step

    @property
    def ratio(self) -> float:
        return self.floor_best.us_per_packet / self.edge_best.us_per_packet


def pick_steps(edge: list[Step]) -> tuple[Step, Step] | None:
    """best: the lossless step with the most calls; half: the lossless step nearest half of its calls."""
    lossless = [s for s in edge if s.lossless]
    if not lossless:
        return None
    best = max(lossless, key=lambda s: s.calls)
    half = min(lossless, key=lambda s: (abs(s.calls - best.calls / 2), s.calls))
    return best, half


def _median(rounds: list[Round], key: Callable[[Round], float]) -> Round:
    """The round whose figure is the median (the lower middle of an even count)."""
    ordered = sorted(rounds, key=key)
    return ordered[(len(ordered) - 1) // 2]


def summarise(rounds: list[Round], decodes: int) -> dict[str, object]:
    """Ratio and CPU figures from the round of median ratio; latency from the round of median p99 at half."""
    if not rounds:
        return {
            "calls_per_core_lossless": 0,
            "floor_calls_per_core": 0,
            "us_per_packet": None,
            "floor_us_per_packet": None,
            "ratio_to_floor": None,
            "added_latency_p50_us": None,
            "added_latency_p99_us": None,
            "decodes": decodes,
        }
    cost = _median(rounds, lambda r: r.ratio)
    latency = _median(rounds, lambda r: r.edge_half.latency_p99_us)
    best, floor = cost.edge_best, cost.floor_best
    return {
        "calls_per_core_lossless": round(best.calls / best.cpu_fraction, 1) if best.cpu_fraction else None,
        "floor_calls_per_core": round(floor.calls / floor.cpu_fraction, 1) if floor.cpu_fraction else None,
        "us_per_packet": best.us_per_packet,
        "floor_us_per_packet": floor.us_per_packet,
        "ratio_to_floor": round(cost.ratio, 3),
        "added_latency_p50_us": latency.edge_half.latency_p50_us,
        "added_latency_p99_us": latency.edge_half.latency_p99_us,
        "decodes": decodes,
    }


def rounds_table(rounds: list[Round]) -> str:
    lines = [
        f"{'round':>5}{'calls':>7}{'edge us/pkt':>13}{'floor us/pkt':>14}{'ratio':>7}"
        f"{'half':>6}{'edge p50/p99 us':>18}{'floor p50/p99 us':>19}{'load':>6}"
    ]
    for n, r in enumerate(rounds, start=1):
        lines.append(
            f"{n:>5}{r.edge_best.calls:>7}{r.edge_best.us_per_packet:>13.1f}{r.floor_best.us_per_packet:>14.1f}"
            f"{r.ratio:>7.3f}{r.edge_half.calls:>6}"
            f"{f'{r.edge_half.latency_p50_us:.0f}/{r.edge_half.latency_p99_us:.0f}':>18}"
            f"{f'{r.floor_half.latency_p50_us:.0f}/{r.floor_half.latency_p99_us:.0f}':>19}"
            f"{r.edge_best.load_average:>6.1f}"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, object]:
    install_decode_counter()
    out_dir = Path(args.out_dir)
    log_dir = out_dir / "logs"
    steps = [int(n) for n in args.steps.split(",")]
    w, s = args.warmup, args.seconds
    print(
        f"bench-edge: {PACKETS_PER_CALL_DIRECTION} packets/s per call direction (VP8 ~1 Mbit/s + Opus), "
        f"{s:.0f} s per step; CPU % per process under test (100 = one core); logs in {log_dir}",
        flush=True,
    )
    print(HEADER, flush=True)
    edge1, decodes = await ramp(lambda: EdgePath.start(1, log_dir), steps, w, s, stop_at_loss=True)
    # The floor, at exactly the call counts (so the packet rates) the edge was measured at.
    reached = [r.calls for r in edge1]
    floor_srtp, _ = await ramp(lambda: Floor.start(True, log_dir), reached, w, s, stop_at_loss=False)
    floor_plain, _ = await ramp(lambda: Floor.start(False, log_dir), reached, w, s, stop_at_loss=False)
    edge3: list[Step] = []
    extra_steps: list[Step] = []
    if not args.no_backbone:
        edge3, decodes3 = await ramp(lambda: EdgePath.start(3, log_dir), steps, w, s, stop_at_loss=True)
        decodes += decodes3
    rounds: list[Round] = []
    picked = pick_steps(edge1)
    if picked is not None:
        best, half = picked
        at_calls = sorted({half.calls, best.calls})
        floor_at = {x.calls: x for x in floor_srtp}
        rounds.append(Round(best, floor_at[best.calls], half, floor_at[half.calls]))
        # The machine is shared: the same comparison again, edge and floor back to back, and the median kept.
        for n in range(2, args.rounds + 1):
            print(f"round {n} of {args.rounds}: 1-edge and floor-srtp again at {at_calls} calls", flush=True)
            edge_again, more = await ramp(lambda: EdgePath.start(1, log_dir), at_calls, w, s, stop_at_loss=False)
            floor_again, _ = await ramp(lambda: Floor.start(True, log_dir), at_calls, w, s, stop_at_loss=False)
            decodes += more
            e, f = {x.calls: x for x in edge_again}, {x.calls: x for x in floor_again}
            rounds.append(Round(e[best.calls], f[best.calls], e[half.calls], f[half.calls]))
            extra_steps += edge_again + floor_again
        print("\nthe 1-edge path against the SRTP floor, round by round (the summary takes the median):", flush=True)
        print(rounds_table(rounds), flush=True)
    decodes += decoders_created()
    summary = summarise(rounds, decodes)
    lossless = [r for r in edge1 if r.lossless]
    if any(r.generator_bound for r in edge1 + edge3):
        print(
            "note: the load process reached its own limit (generator-bound) before the edge lost packets: the edge's "
            "calls per core is extrapolated from its measured CPU per packet at the highest step reached",
            flush=True,
        )
    if args.profile and lossless:
        top = max(r.calls for r in lossless)
        path = out_dir / "edge-profile.pstats"
        print(f"\nprofile of the edge at {top} calls (cProfile, own window; written to {path} and .txt):", flush=True)
        print(await profile_edge(top, w, s, path, log_dir), flush=True)
    measured = edge1 + floor_srtp + floor_plain + edge3 + extra_steps
    report = {"steps": [asdict(r) for r in measured], "rounds": [asdict(r) for r in rounds], "summary": summary}
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1,2,4,6,8,12,16,24,32,48", help="call counts to measure, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per step")
    parser.add_argument("--warmup", type=float, default=1.0, help="traffic before each window, not counted")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="times the 1-edge path and the SRTP floor are compared at the summary's rates (the median is kept)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter windows and fewer steps (about a minute)")
    parser.add_argument("--no-backbone", action="store_true", help="skip the 3-edge path")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the profile of the edge")
    parser.add_argument("--out-dir", default=str(REPO_ROOT / ".duet" / "bench"), help="report.json, profile, logs")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    if args.quick:
        args.steps, args.seconds, args.rounds = "1,4,8,16,32", min(args.seconds, 2.5), 1
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    try:
        summary = asyncio.run(run(args))
    except KeyboardInterrupt:
        print("bench-edge: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except RuntimeError as exc:
        print(f"bench-edge failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
