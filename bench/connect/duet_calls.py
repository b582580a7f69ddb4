"""Duet calls for one region pair on the emulated world cluster, each timed match -> first frame.

Clients connect through their region's control-plane proxy and are placed at
their region's edge by the synthetic geo database. Per pair the calls follow
one schedule over n clients per region (a1..an in region a, b1..bn in region
b; n = 2 for up to 4 calls, 4 for up to 16), e.g. for four calls::

    1  a1 + b1   find_partner (fresh warm legs)
    2  a2 + b2   find_partner
    3  a1 + b2   next: both legs were bridged to someone else and are re-bridged
    4  a2 + b1   next (their partners pressed next before: the SDK looks again)

first every ai + bi by find_partner, then the other pairings by next, so
every call meets a new partner (the synthetic camera's marker then tells its
first frame exactly, and the matchmaker's no-recent-partner rule never
stands in the way) and most calls measure "next" on warm legs. The pair's
calls run one after the other: with one shared pool, a concurrent call of
another pair could take a partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

import grpc

from bench.connect.media_gate import GatedCamera, GatedMicrophone
from bench.connect.pairs import PairPath
from bench.loop_lag import LoopLag
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.client import CallResult, DuetClient
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo
from duet.services.devkit.synthetic_media import MarkerRule
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

__all__ = [
    "MAX_CALLS_PER_PAIR",
    "MAX_CLIENTS_PER_REGION",
    "SCHEDULE",
    "STAGES_AFTER_MATCH",
    "DuetSample",
    "pair_calls",
    "schedule",
]

logger = logging.getLogger("bench.connect")

MAX_CLIENTS_PER_REGION = 4
MAX_CALLS_PER_PAIR = MAX_CLIENTS_PER_REGION**2


def schedule(calls: int) -> tuple[tuple[int, int, str], ...]:
    """The first ``calls`` calls of a pair: (client index on a's side, on b's side, "find" or "next")."""
    if not 1 <= calls <= MAX_CALLS_PER_PAIR:
        raise ValueError(f"calls per pair must be 1 to {MAX_CALLS_PER_PAIR}, got {calls}")
    n = 2 if calls <= 4 else MAX_CLIENTS_PER_REGION
    finds = [(i, i, "find") for i in range(n)]
    # Shift by 1, 2, ...: each round pairs every client with a partner it has not met yet.
    nexts = [(i, (i + shift) % n, "next") for shift in range(1, n) for i in range(n)]
    return tuple((finds + nexts)[:calls])


# The four-call schedule of two clients a side (the module docstring's table).
SCHEDULE = schedule(4)
# Stages reported per call, in ms after the match, for the slower side (the one that sets connect_ms).
STAGES_AFTER_MATCH = ("route_picked", "bridged", "first_packet_at_edge", "first_frame")


@dataclass
class DuetSample:
    pair: tuple[str, str]
    how: str  # "find" or "next"
    connect_ms: float | None  # the slower side's first_frame - matched; None when the call failed
    stages: dict[str, float] = field(default_factory=dict)  # the slower side's, ms after the match
    sides_ms: tuple[float, ...] = ()  # connect_ms of each side
    route: tuple[str, ...] = ()
    error: str = ""
    # The load process's worst event-loop delay between the match and the slower side's first frame.
    loop_lag_ms: float = 0.0


async def _place(x: DuetClient, y: DuetClient, how: str) -> tuple[CallResult, CallResult]:
    async def one(c: DuetClient) -> CallResult:
        return await (c.next() if how == "next" else c.find_partner())

    results = await asyncio.gather(one(x), one(y), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    rx, ry = results
    assert isinstance(rx, CallResult) and isinstance(ry, CallResult)
    if rx.call_id != ry.call_id:
        raise RuntimeError(f"the two clients were matched into different calls ({rx.call_id}, {ry.call_id})")
    return rx, ry


async def _edge_stage(
    stub: matchmaker_pb2_grpc.MatchmakerStub, call_id: str, user_id: str, credentials: tuple[tuple[str, str]]
) -> float:
    """first_packet_at_edge of ``user_id``'s side, from the call record (the edge's figure, merged in later)."""
    for _ in range(20):
        try:
            record = await stub.GetCall(matchmaker_pb2.GetCallRequest(call_id=call_id), timeout=5, metadata=credentials)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise  # the benchmark's own credentials are wrong: say so, do not report a missing stage
            return 0.0
        side = record.a if record.a.user_id == user_id else record.b
        if side.stages.first_packet_at_edge:
            return float(side.stages.first_packet_at_edge)
        await asyncio.sleep(0.05)  # the connect reports land just after the first frames
    return 0.0


async def _sample(
    stub: matchmaker_pb2_grpc.MatchmakerStub,
    path: PairPath,
    how: str,
    results: tuple[CallResult, CallResult],
    users: tuple[str, str],
    credentials: tuple[tuple[str, str]],
    lag: LoopLag | None,
) -> DuetSample:
    sides = [r.connect_ms for r in results if r.connect_ms is not None]
    if len(sides) != 2:
        return DuetSample(path.key, how, None, error="a side has no first frame")
    slower_index = max(range(2), key=lambda k: results[k].connect_ms or 0.0)
    slower = results[slower_index]
    matched = slower.stages["matched"]
    stage_times = dict(slower.stages)
    stage_times["first_packet_at_edge"] = await _edge_stage(stub, slower.call_id, users[slower_index], credentials)
    stages = {s: stage_times[s] - matched for s in STAGES_AFTER_MATCH if stage_times.get(s)}
    route = tuple(slower.route)
    expected = {path.edge_a, path.edge_b}
    if set(route[:1] + route[-1:]) != expected:
        return DuetSample(path.key, how, None, error=f"route {route} does not join {sorted(expected)}")
    worst_lag = lag.worst_between(matched, stage_times["first_frame"]) if lag is not None else 0.0
    return DuetSample(path.key, how, max(sides), stages, tuple(sides), route, loop_lag_ms=round(worst_lag, 1))


async def pair_calls(
    info: ClusterInfo,
    path: PairPath,
    *,
    calls: int,
    first_tag: int,
    timeout: float = 15.0,
    lag: LoopLag | None = None,
) -> list[DuetSample]:
    """Place ``calls`` (1-16) calls between the two regions; one sample per call, failures included."""
    plan = schedule(calls)
    regions = (path.region_a, path.region_b)
    used = sorted({(0, i) for i, _, _ in plan} | {(1, j) for _, j, _ in plan})
    clients: dict[tuple[int, int], DuetClient] = {}
    gates: dict[tuple[int, int], tuple[GatedCamera, GatedMicrophone]] = {}
    # New users each run: the matchmaker remembers (in the database) whom a user met lately, and a
    # second run on the same database would find its scheduled pairs refused.
    run = secrets.token_hex(2)
    for n, (side, i) in enumerate(used):
        region = regions[side]
        name = f"{'ab'[side]}{i + 1}"
        tag = first_tag + n
        gates[(side, i)] = (GatedCamera(tag), GatedMicrophone())
        clients[(side, i)] = DuetClient(
            info.matchmaker_for(region),
            f"bench-{run}-{tag}",
            f"{name}@{region}",
            video=gates[(side, i)][0],
            audio=gates[(side, i)][1],
            first_frame_rule=MarkerRule(own_tag=tag),
            client_ip=DEMO_CLIENT_IPS[region],
            token=info.user_tokens(f"bench-{run}-{tag}"),
            frame_timeout=timeout,
            match_timeout=timeout,
        )
    samples: list[DuetSample] = []
    # The call records are bookkeeping of the benchmark: read straight from the matchmaker, not delayed.
    channel = grpc.aio.insecure_channel(info.matchmaker)
    stub = matchmaker_pb2_grpc.MatchmakerStub(channel)
    credentials = bearer_metadata(info.service_token(Role.OPS_READ))
    try:
        connected = await asyncio.gather(*(c.connect() for c in clients.values()), return_exceptions=True)
        failures = [r for r in connected if isinstance(r, BaseException)]
        if failures:
            error = f"connect failed: {failures[0]}"
            return [DuetSample(path.key, how, None, error=error) for _, _, how in plan]
        for i, j, how in plan:
            # Only the two clients of this call encode (see media_gate.py).
            for key, tracks in gates.items():
                for track in tracks:
                    if key in ((0, i), (1, j)):
                        track.open()
                    else:
                        track.close()
            try:
                results = await _place(clients[(0, i)], clients[(1, j)], how)
            except Exception as exc:  # one failed call is counted; the pair's next calls still run
                logger.warning("call %s %s failed: %s", path.key, how, exc)
                samples.append(DuetSample(path.key, how, None, error=str(exc)))
                continue
            users = (clients[(0, i)].user_id, clients[(1, j)].user_id)
            samples.append(await _sample(stub, path, how, results, users, credentials, lag))
        return samples
    finally:
        with contextlib.suppress(Exception):
            await asyncio.gather(*(c.leave() for c in clients.values()), return_exceptions=True)
        await channel.close()
