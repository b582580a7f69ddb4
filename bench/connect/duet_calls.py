"""Duet calls for one region pair on the emulated world cluster, each timed match -> first frame.

Clients connect through their region's control-plane proxy and are placed at
their region's edge by the synthetic geo database. Per pair the calls follow
one schedule over up to four clients (a1, a2 in region a; b1, b2 in region b)::

    1  a1 + b1   find_partner (fresh warm legs)
    2  a2 + b2   find_partner
    3  a1 + b2   next: both legs were bridged to someone else and are re-bridged
    4  a2 + b1   next (their partners pressed next before: the SDK looks again)

so every call meets a new partner (the synthetic camera's marker then tells
its first frame exactly) and calls 3 and 4 measure "next" on warm legs. The
pair's calls run one after the other: with one shared pool, a concurrent
call of another pair could take a partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import grpc

from bench.connect.pairs import PairPath
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.client import CallResult, DuetClient
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

__all__ = ["SCHEDULE", "STAGES_AFTER_MATCH", "DuetSample", "pair_calls"]

logger = logging.getLogger("bench.connect")

# (client on a's side, client on b's side, how): indexes 0/1 are a1/a2 and b1/b2.
SCHEDULE = ((0, 0, "find"), (1, 1, "find"), (0, 1, "next"), (1, 0, "next"))
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
    return DuetSample(path.key, how, max(sides), stages, tuple(sides), route)


async def pair_calls(
    info: ClusterInfo, path: PairPath, *, calls: int, first_tag: int, timeout: float = 15.0
) -> list[DuetSample]:
    """Place ``calls`` (1-4) calls between the two regions; one sample per call, failures included."""
    schedule = SCHEDULE[: max(1, min(calls, len(SCHEDULE)))]
    regions = (path.region_a, path.region_b)
    used = sorted({(0, i) for i, _, _ in schedule} | {(1, j) for _, j, _ in schedule})
    clients: dict[tuple[int, int], DuetClient] = {}
    for n, (side, i) in enumerate(used):
        region = regions[side]
        name = f"{'ab'[side]}{i + 1}"
        clients[(side, i)] = synthetic_client(
            info.matchmaker_for(region),
            f"bench-{first_tag + n}",
            f"{name}@{region}",
            tag=first_tag + n,
            client_ip=DEMO_CLIENT_IPS[region],
            token=info.user_tokens(f"bench-{first_tag + n}"),
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
            return [DuetSample(path.key, how, None, error=error) for _, _, how in schedule]
        for i, j, how in schedule:
            try:
                results = await _place(clients[(0, i)], clients[(1, j)], how)
            except Exception as exc:  # one failed call is counted; the pair's next calls still run
                logger.warning("call %s %s failed: %s", path.key, how, exc)
                samples.append(DuetSample(path.key, how, None, error=str(exc)))
                continue
            users = (clients[(0, i)].user_id, clients[(1, j)].user_id)
            samples.append(await _sample(stub, path, how, results, users, credentials))
        return samples
    finally:
        with contextlib.suppress(Exception):
            await asyncio.gather(*(c.leave() for c in clients.values()), return_exceptions=True)
        await channel.close()
