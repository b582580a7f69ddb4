"""The connect-path stages: their names, who times which, and one call's result.

Every stage is an epoch-millisecond timestamp (0.0 = not reached). The client
times its own stages (session open to first partner frame) and the matchmaker
and edges time the rest, reported in Matched.stages; a :class:`CallResult`
merges both (docs/architecture.md, "The connect path").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from duet.services.client.inbox import PartnerFrame
from duet.v1 import common_pb2, matchmaker_pb2

__all__ = [
    "CLIENT_STAGES",
    "SERVER_STAGES",
    "STAGES",
    "CallResult",
    "build_call_result",
    "client_report_stages",
    "merge_stages",
    "now_ms",
    "stages_from_proto",
    "stages_to_proto",
]

# The connect-path stages, in order.
STAGES = (
    "session_open",
    "edge_assigned",
    "leg_connected",
    "queued",
    "matched",
    "route_picked",
    "bridged",
    "first_packet_at_edge",
    "first_frame",
)
# Timed by this client on its own clock ...
CLIENT_STAGES = ("session_open", "edge_assigned", "leg_connected", "first_frame")
# ... and by the matchmaker (and edges), reported in Matched.stages.
SERVER_STAGES = ("queued", "matched", "route_picked", "bridged", "first_packet_at_edge")


def now_ms() -> float:
    """Wall clock, epoch milliseconds: the unit of every stage timestamp."""
    return time.time() * 1000


def stages_from_proto(stages: common_pb2.StageTimes) -> dict[str, float]:
    """Every stage name -> epoch ms (0.0 = not reached)."""
    return {name: float(getattr(stages, name)) for name in STAGES}


def stages_to_proto(stages: Mapping[str, float]) -> common_pb2.StageTimes:
    return common_pb2.StageTimes(**{name: float(stages.get(name) or 0.0) for name in STAGES})


def client_report_stages(client_stages: Mapping[str, float]) -> common_pb2.StageTimes:
    """What the ConnectReport carries: only the stages this client timed itself.

    ``queued`` is left out on purpose: the matchmaker's own value is the
    authoritative one, and a client's receive time must not overwrite it.
    """
    return stages_to_proto({name: client_stages.get(name, 0.0) for name in CLIENT_STAGES})


@dataclass
class CallResult:
    """One call as seen by this client."""

    call_id: str
    partner_display_name: str
    partner_region: str
    route: list[str]
    route_rtt_ms: float
    # Every name of STAGES -> epoch ms (0.0 = not reached): this client's stages
    # plus the server's from Matched (queued is the server's, see build_call_result).
    stages: dict[str, float]
    connect_ms: float | None  # first_frame - matched
    total_ms: float | None  # first_frame - queued
    # What the first-frame rule read off the partner's first frame (a FrameMarker
    # for a synthetic-camera partner); None when the rule reads nothing.
    first_marker: object | None
    frames_decoded: int  # frames decoded from arming (Find/Next sent) to the first partner frame, inclusive
    # What this client timed on its own clock; its "queued" is when Queued arrived.
    client_stages: dict[str, float] = field(default_factory=dict)


def merge_stages(server_stages: Mapping[str, float], client_stages: Mapping[str, float]) -> dict[str, float]:
    """All stage names: client-timed stages from the client, the rest from the server.

    ``queued`` comes from the server (Matched.stages, else Queued.queued as the
    caller passes it in server_stages) and falls back to the client's receive time.
    """
    merged = {name: 0.0 for name in STAGES}
    for name in SERVER_STAGES:
        merged[name] = float(server_stages.get(name) or 0.0)
    for name in CLIENT_STAGES:
        merged[name] = float(client_stages.get(name) or 0.0)
    if not merged["queued"]:
        merged["queued"] = float(client_stages.get("queued") or 0.0)
    return merged


def _difference(later: float, earlier: float) -> float | None:
    return later - earlier if later > 0 and earlier > 0 else None


def build_call_result(
    matched: matchmaker_pb2.Matched,
    *,
    client_stages: Mapping[str, float],
    queued_at_server: float = 0.0,
    first_frame: PartnerFrame | None,
) -> CallResult:
    """A CallResult from the Matched message, this client's stage times and the first partner frame."""
    server = stages_from_proto(matched.stages)
    if not server["queued"]:
        server["queued"] = queued_at_server
    client = dict(client_stages)
    if first_frame is not None:
        client["first_frame"] = first_frame.at_ms
    stages = merge_stages(server, client)
    return CallResult(
        call_id=matched.call_id,
        partner_display_name=matched.partner_display_name,
        partner_region=matched.partner_region,
        route=list(matched.route),
        route_rtt_ms=matched.route_rtt_ms,
        stages=stages,
        connect_ms=_difference(stages["first_frame"], stages["matched"]),
        total_ms=_difference(stages["first_frame"], stages["queued"]),
        first_marker=first_frame.marker if first_frame is not None else None,
        frames_decoded=first_frame.frames_decoded if first_frame is not None else 0,
        client_stages={name: float(v) for name, v in client.items()},
    )
