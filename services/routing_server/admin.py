"""The TopologyAdmin gRPC service: show, apply, drain, link, and the audit log (admin.proto).

Thin: files are parsed by ``routing.topology_file``, changes planned by
``routing.topology_apply``, described by ``routing.topology_diff`` and
predicted by ``routing.connect_model``. A change is recorded in the audit log
before it replaces the live topology, so what runs is always what the log
says; the replacement wakes every WatchRoutes stream.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import grpc

from duet.routing.topology import EdgeState, Topology, UnknownEdge
from duet.routing.topology_apply import ChangeRefused, plan_apply
from duet.routing.topology_diff import PairImpact, connect_impact, diff_topologies, live_call_warnings
from duet.routing.topology_file import dump_topology, parse_topology, topology_document
from duet.services.routing_server.actor import actor_of
from duet.services.routing_server.state import RoutingState
from duet.services.rpc.errors import map_errors
from duet.services.store.topology_audit import MAX_LIST, TopologyAudit, TopologyChangeRow
from duet.v1 import admin_pb2, admin_pb2_grpc, common_pb2

logger = logging.getLogger("duet.routing.admin")

DEFAULT_LIST = 50
DEFAULT_LAST_MILE_MS = 15.0


class VersionMismatch(RuntimeError):
    """expected_version no longer matches the running topology."""


class AuditUnavailable(RuntimeError):
    """The audit log could not be written, so the change was not applied."""


_ERRORS = {
    UnknownEdge: grpc.StatusCode.NOT_FOUND,
    ChangeRefused: grpc.StatusCode.FAILED_PRECONDITION,
    VersionMismatch: grpc.StatusCode.ABORTED,
    AuditUnavailable: grpc.StatusCode.UNAVAILABLE,
    ValueError: grpc.StatusCode.INVALID_ARGUMENT,
}

_STATES = {
    common_pb2.EDGE_STATE_ACTIVE: (EdgeState.ACTIVE, "undrain"),
    common_pb2.EDGE_STATE_DRAINING: (EdgeState.DRAINING, "drain"),
    common_pb2.EDGE_STATE_DOWN: (EdgeState.DOWN, "down"),
}

_AUDIT_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True)
class _Impact:
    matchmaker_region: str
    last_mile_ms: float


def _impact_options(options: admin_pb2.ImpactOptions, before: Topology, after: Topology) -> _Impact:
    region = options.matchmaker_region
    if not region:
        first = after.regions or before.regions
        if not first:
            raise ValueError("the topology declares no regions")
        region = first[0].name
    elif not (before.has_region(region) or after.has_region(region)):
        raise ValueError(f"impact.matchmaker_region {region!r} is not declared in the topology")
    last_mile = options.last_mile_ms or DEFAULT_LAST_MILE_MS
    if not math.isfinite(last_mile) or last_mile < 0:
        raise ValueError(f"impact.last_mile_ms must be a finite number >= 0, got {options.last_mile_ms!r}")
    return _Impact(region, last_mile)


def _estimate(ms: float | None) -> tuple[float, admin_pb2.PredictionState]:
    if ms is None:
        return 0.0, admin_pb2.PREDICTION_STATE_ABSENT
    if math.isinf(ms):
        return 0.0, admin_pb2.PREDICTION_STATE_UNREACHABLE
    return ms, admin_pb2.PREDICTION_STATE_PREDICTED


def _pair(p: PairImpact) -> admin_pb2.PairImpact:
    before_ms, before_state = _estimate(p.before_ms)
    after_ms, after_state = _estimate(p.after_ms)
    return admin_pb2.PairImpact(
        region_a=p.region_a,
        region_b=p.region_b,
        before_ms=before_ms,
        after_ms=after_ms,
        before_state=before_state,
        after_state=after_state,
    )


def change_record(row: TopologyChangeRow) -> admin_pb2.TopologyChange:
    return admin_pb2.TopologyChange(
        change_id=row.change_id,
        applied_at_ms=round(row.applied_at * 1000),
        actor=row.actor,
        action=row.action,
        changes=list(row.changes),
        version_before=row.version_before,
        version_after=row.version_after,
    )


class TopologyAdminServicer(admin_pb2_grpc.TopologyAdminServicer):
    def __init__(self, state: RoutingState, audit: TopologyAudit) -> None:
        self.state = state
        self.audit = audit

    async def _change(
        self,
        context: grpc.aio.ServicerContext,
        action: str,
        plan: Callable[[Topology], Topology],
        options: admin_pb2.ImpactOptions,
        *,
        dry_run: bool = False,
        expected_version: int = 0,
    ) -> admin_pb2.TopologyChangeResult:
        """Plan a change against the live topology, predict it, record it, then make it live."""
        async with self.state.mutating:
            current = self.state.topology
            if expected_version and current.version != expected_version:
                raise VersionMismatch(
                    f"the topology is at version {current.version}, not {expected_version}: "
                    "it changed since you looked; review the diff again"
                )
            planned = plan(current)
            impact_options = _impact_options(options, current, planned)
            changes = [str(c) for c in diff_topologies(current, planned)]
            # Predicting every region pair is CPU work: keep the event loop serving meanwhile.
            impact = await asyncio.to_thread(
                connect_impact,
                current,
                planned,
                impact_options.matchmaker_region,
                last_mile_ms=impact_options.last_mile_ms,
            )
            result = admin_pb2.TopologyChangeResult(
                applied=False,
                version_before=current.version,
                version_after=current.version,
                changes=changes,
                warnings=live_call_warnings(current, planned),
                impact=[_pair(p) for p in impact],
                matchmaker_region=impact_options.matchmaker_region,
            )
            if dry_run or not changes:
                return result
            if planned.version == current.version:
                planned = planned.with_version(current.version + 1)
            actor = actor_of(context)
            try:
                row = await self.audit.record(
                    actor=actor,
                    action=action,
                    changes=changes,
                    version_before=current.version,
                    version_after=planned.version,
                    topology=topology_document(planned),
                )
            except _AUDIT_FAILURES as exc:
                logger.exception("audit log write failed; %s not applied", action)
                raise AuditUnavailable(
                    f"the audit log could not be written ({exc.__class__.__name__}: {exc}); nothing was applied"
                ) from exc
            await self.state.replace(planned)
        logger.info("topology v%d -> v%d by %s (%s): %s", current.version, planned.version, actor, action, changes)
        result.applied = True
        result.version_after = planned.version
        result.change_id = row.change_id
        return result

    @map_errors(_ERRORS)
    async def GetTopologyFile(
        self, request: admin_pb2.GetTopologyFileRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.TopologyFile:
        t = self.state.topology
        header = [f"running topology, version {t.version} (apply an edited copy with: duet topology apply FILE)"]
        return admin_pb2.TopologyFile(version=t.version, text=dump_topology(t, header=header, registrations=True))

    @map_errors(_ERRORS)
    async def ApplyTopology(
        self, request: admin_pb2.ApplyTopologyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.TopologyChangeResult:
        if not request.text.strip():
            raise ValueError("text is required: the topology file's contents")
        # A large file takes a while to parse: off the event loop. TopologyFileError -> INVALID_ARGUMENT.
        declared = await asyncio.to_thread(parse_topology, request.text, request.source_name)
        return await self._change(
            context,
            "apply",
            lambda current: plan_apply(current, declared),
            request.impact,
            dry_run=request.dry_run,
            expected_version=request.expected_version,
        )

    @map_errors(_ERRORS)
    async def SetEdgeState(
        self, request: admin_pb2.SetEdgeStateRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.TopologyChangeResult:
        if not request.edge_id:
            raise ValueError("edge_id is required")
        if request.state not in _STATES:
            raise ValueError("state is required: ACTIVE, DRAINING or DOWN")
        state, action = _STATES[request.state]
        return await self._change(
            context, action, lambda current: current.with_edge_state(request.edge_id, state), request.impact
        )

    @map_errors(_ERRORS)
    async def SetLink(
        self, request: admin_pb2.SetLinkRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.TopologyChangeResult:
        if not request.a or not request.b:
            raise ValueError("a and b, the link's two edge ids, are required")
        if request.a == request.b:
            raise ValueError(f"a link joins two different edges, got {request.a!r} twice")
        rtt = request.rtt_ms if request.HasField("rtt_ms") else None
        loss = request.loss if request.HasField("loss") else None
        up = request.up if request.HasField("up") else None
        if rtt is None and loss is None and up is None:
            raise ValueError("nothing to change: give rtt_ms, loss or up")
        if rtt is not None and not (math.isfinite(rtt) and rtt > 0):
            raise ValueError(f"rtt_ms must be a finite number > 0, got {rtt!r}")
        if loss is not None and not (math.isfinite(loss) and 0 <= loss <= 1):
            raise ValueError(f"loss must be a fraction in [0, 1], got {loss!r}")

        def plan(current: Topology) -> Topology:
            current.edge(request.a), current.edge(request.b)  # UnknownEdge -> NOT_FOUND
            if current.link(request.a, request.b) is None and rtt is None:
                raise ChangeRefused([f"there is no link {request.a}<->{request.b}; give its rtt_ms to add it"])
            return current.with_link(request.a, request.b, rtt_ms=rtt, loss=loss, up=up)

        return await self._change(context, "link", plan, request.impact)

    @map_errors(_ERRORS)
    async def ListTopologyChanges(
        self, request: admin_pb2.ListTopologyChangesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListTopologyChangesResponse:
        if request.limit > MAX_LIST:
            raise ValueError(f"limit must be at most {MAX_LIST}, got {request.limit}")
        try:
            rows = await self.audit.recent(request.limit or DEFAULT_LIST)
        except _AUDIT_FAILURES as exc:
            raise AuditUnavailable(f"the audit log could not be read ({exc.__class__.__name__}: {exc})") from exc
        return admin_pb2.ListTopologyChangesResponse(
            changes=[change_record(r) for r in rows], durable=self.audit.durable
        )
