"""Demo calls on a running cluster: simulated users in different regions, each
call's connect-time breakdown as a table, and a JSON summary.

Six users, two per region, with warm legs. Round one pairs them by
find_partner; round two by "next", which re-bridges the warm legs to new
partners without a new PeerConnection. With three regions the users are laid
out so every call crosses the backbone between two edges.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.client import CallResult, DuetClient
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

logger = logging.getLogger("duet.demo")

NAMES = ("ana", "ben", "chen", "dara", "eli", "femi")
# user i lives in REGION_SLOTS[i] (index into the cluster's regions)
REGION_SLOTS = (0, 1, 1, 2, 2, 0)
# (a, b, how): round one by find_partner, round two by next on warm legs
SCHEDULE = ((0, 1, "find"), (2, 3, "find"), (4, 5, "find"), (0, 3, "next"), (2, 5, "next"), (4, 1, "next"))

STAGE_COLUMNS = (
    ("route_picked", "route"),
    ("bridged", "bridged"),
    ("first_packet_at_edge", "1st pkt@edge"),
    ("first_frame", "1st frame"),
)


@dataclass
class DemoCall:
    number: int
    how: str
    record: matchmaker_pb2.CallRecord | None
    results: tuple[CallResult | BaseException, CallResult | BaseException]

    @property
    def connected(self) -> bool:
        return self.record is not None and all(
            isinstance(r, CallResult) and r.connect_ms is not None for r in self.results
        )

    @property
    def connect_ms(self) -> float | None:
        # A call is connected when both people see each other: the slower side counts.
        if not self.connected:
            return None
        return max(r.connect_ms for r in self.results if isinstance(r, CallResult))  # type: ignore[type-var]


async def _call(client: DuetClient, how: str) -> CallResult:
    return await (client.next() if how == "next" else client.find_partner())


def _region_of(i: int, regions: Sequence[str]) -> str:
    return regions[REGION_SLOTS[i] % len(regions)]


async def _fetch_record(
    stub: matchmaker_pb2_grpc.MatchmakerStub, call_id: str, metadata: tuple[tuple[str, str], ...]
) -> matchmaker_pb2.CallRecord | None:
    # Connect reports arrive just after the first frame: give them a moment to land.
    record = None
    for _ in range(20):
        try:
            record = await stub.GetCall(matchmaker_pb2.GetCallRequest(call_id=call_id), timeout=5, metadata=metadata)
        except grpc.aio.AioRpcError:
            record = None
        if record is not None and record.a.stages.first_frame and record.b.stages.first_frame:
            break
        await asyncio.sleep(0.05)
    return record


def format_call(call: DemoCall) -> str:
    lines = []
    rec = call.record
    if rec is None:
        errors = "; ".join(str(r) for r in call.results if isinstance(r, BaseException))
        return f"call {call.number} ({call.how}): FAILED {errors}"
    lines.append(
        f"call {call.number} ({call.how})  {rec.a.user_id}@{rec.a.edge_id} <-> {rec.b.user_id}@{rec.b.edge_id}"
        f"  route {' > '.join(rec.route)} ({rec.route_rtt_ms:.0f} ms RTT in the topology)"
    )
    header = (
        f"  {'user':<15}{'waited':>9}" + "".join(f"{label:>14}" for _, label in STAGE_COLUMNS) + f"{'connect_ms':>12}"
    )
    lines.append(header)
    lines.append("  " + "-" * (len(header) - 2))
    for side in (rec.a, rec.b):
        st = side.stages
        waited = st.matched - st.queued if st.queued and st.matched else 0.0
        cells = []
        for name, _ in STAGE_COLUMNS:
            value = getattr(st, name)
            cells.append(f"{'+%.1f' % (value - st.matched) if value and st.matched else '-':>14}")
        connect = f"{side.connect_ms:.1f}" if side.connect_ms else "-"
        lines.append(f"  {side.user_id:<15}{waited:>8.1f} " + "".join(cells) + f"{connect:>12}")
    lines.append("  (times in ms after the match; waited = queued -> matched)")
    return "\n".join(lines)


async def run_demo(
    info: ClusterInfo, regions: Sequence[str], *, calls: int = 6, stop: asyncio.Event | None = None
) -> dict[str, float | int | None]:
    """Place ``calls`` demo calls (1-6) on the cluster at ``info``; print a table per call."""
    calls = max(1, min(calls, len(SCHEDULE)))
    schedule = SCHEDULE[:calls]
    used = sorted({i for a, b, _ in schedule for i in (a, b)})
    # New users each run: the matchmaker remembers (in the database) whom a user met lately and does not
    # pair them again, so the same six users would not be paired as scheduled a second time.
    run = secrets.token_hex(2)
    clients = {
        i: synthetic_client(
            info.matchmaker_for(_region_of(i, regions)),
            f"demo-{NAMES[i]}-{run}",
            NAMES[i],
            tag=100 + i,
            client_ip=DEMO_CLIENT_IPS[_region_of(i, regions)],
            token=info.user_tokens(f"demo-{NAMES[i]}-{run}"),
        )
        for i in used
    }
    results: list[DemoCall] = []
    channel = grpc.aio.insecure_channel(info.matchmaker)
    stub = matchmaker_pb2_grpc.MatchmakerStub(channel)
    reader = bearer_metadata(info.service_token(Role.OPS_READ, "demo"))  # reads every demo call's record
    try:
        print(f"connecting {len(clients)} simulated users (warm legs to their ingress edges) ...", flush=True)
        await asyncio.gather(*(c.connect() for c in clients.values()))
        for number, (a, b, how) in enumerate(schedule, start=1):
            if stop is not None and stop.is_set():
                break
            how_a = how if clients[a].in_call else "find"
            how_b = how if clients[b].in_call else "find"
            pair = await asyncio.gather(_call(clients[a], how_a), _call(clients[b], how_b), return_exceptions=True)
            record = None
            ok = [r for r in pair if isinstance(r, CallResult)]
            if ok:
                record = await _fetch_record(stub, ok[0].call_id, reader)
            call = DemoCall(number, how, record, (pair[0], pair[1]))
            results.append(call)
            print(format_call(call), flush=True)
    finally:
        await asyncio.gather(*(c.leave() for c in clients.values()), return_exceptions=True)
        await channel.close()
    connected = [c.connect_ms for c in results if c.connect_ms is not None]
    return {
        "calls": len(schedule),
        "connected": len(connected),
        "connect_ms_p50": round(statistics.median(connected), 1) if connected else None,
        "connect_ms_max": round(max(connected), 1) if connected else None,
    }
