"""Call records as clients and operators see them: a client's connect report and the clock it is on
(clock probes), GetCall, ListCalls.

A part of ``Matchmaker`` (a base class of it), kept apart so the core's file
holds sessions and the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from duet.services.matchmaker.call_setup import CallSetup
from duet.services.matchmaker.clock_sync import InvalidEcho
from duet.services.matchmaker.errors import BadRequest, Forbidden, NotFound
from duet.services.matchmaker.events import ClockProbe
from duet.services.matchmaker.ports import PeerError
from duet.services.matchmaker.session_state import ClientSession
from duet.services.matchmaker.user_id import USER_ID_RE
from duet.services.store.records import CallRow

logger = logging.getLogger("duet.matchmaker")

# Stages a client reports about itself; the server's own (queued ... bridged) are not the client's to set.
CLIENT_STAGES = ("session_open", "edge_assigned", "leg_connected", "first_frame")
# ListCalls: the default and the largest page.
LIST_CALLS_DEFAULT = 20
LIST_CALLS_MAX = 1000


class CallReports(CallSetup):
    """Reading and completing call records; the live calls it looks at are the ``Matchmaker``'s."""

    def _probe_clock(self, session: ClientSession) -> None:
        now = self.now_ms()
        session.send(ClockProbe(probe_id=session.clock.probe(now), server_send=now))

    def clock_echo(self, session: ClientSession, probe_id: int, client_receive: float, client_send: float) -> None:
        """The client's answer to a clock probe: one more sample of its clock offset."""
        try:
            sample = session.clock.answer(probe_id, client_receive, client_send, self.now_ms())
        except InvalidEcho as exc:
            raise BadRequest(str(exc)) from None
        logger.debug(
            "session %s: clock offset %.1f ms, round trip %.1f ms",
            session.session_id[:8],
            sample.offset_ms,
            sample.round_trip_ms,
        )
        if session.clock.wants_more:
            self._probe_clock(session)

    async def connect_report(
        self, session: ClientSession, call_id: str, stages: Mapping[str, float], connected: bool
    ) -> None:
        """The client's view of a call: its own stage times, and whether video arrived.

        ``stages`` may hold any stage names; only the client's own (CLIENT_STAGES) are kept.
        """
        call = self._calls.get(call_id)
        if call is None:
            row = await self.store.get_call(call_id) if call_id else None
            if row is None or session.user_id not in (row.user_a, row.user_b):
                raise NotFound(f"no call '{call_id}' for this session")
            side = 0 if row.user_a == session.user_id else 1
            edge = None
        else:
            if session not in call.sessions:
                raise Forbidden(f"call '{call_id}' is not yours")
            side = call.side_of(session)
            edge = session.edge
        merged = {k: v for k, v in stages.items() if k in CLIENT_STAGES}
        offset = session.clock.offset
        if offset is not None:
            # Onto the matchmaker's clock, so every stage of the record compares with its own.
            merged = {k: offset.to_server(v) if v else v for k, v in merged.items()}
            await self.store.set_clock(call_id, "ab"[side], offset)
        if edge is not None and call is not None:
            try:
                first_packet = await self.edges.first_packet_at_edge(edge, call.bridge_id, side)
            except PeerError:
                first_packet = 0.0
            if first_packet:
                merged["first_packet_at_edge"] = first_packet
        await self.store.merge_stages(call_id, "ab"[side], merged)
        if call is not None and connected and side not in call.observed:
            call.observed.add(side)
            me, partner = call.sessions[side], call.sessions[1 - side]
            matched = call.stages[side].get("matched", 0.0)
            for stage in ("first_packet_at_edge", "first_frame"):
                if merged.get(stage) and matched:
                    self.telemetry.call_stage(stage, me.region, partner.region, merged[stage] - matched)
        if call is not None and connected:
            call.reported.add(side)
            if call.reported == {0, 1}:
                await self.store.set_call_state(call.call_id, "connected")

    async def get_call(self, call_id: str) -> CallRow:
        """One call's record, for anyone who knows its id."""
        if not call_id:
            raise BadRequest("call_id is required")
        row = await self.store.get_call(call_id)
        if row is None:
            raise NotFound(f"no call '{call_id}'")
        return row

    async def list_calls(self, limit: int, user_id: str) -> list[CallRow]:
        """Recent call records, newest first: ``limit`` 0 means the default; ``user_id`` empty means everyone's."""
        if not 0 <= limit <= LIST_CALLS_MAX:
            raise BadRequest(f"limit must be 0 (the default, {LIST_CALLS_DEFAULT}) to {LIST_CALLS_MAX}, got {limit}")
        if user_id and not USER_ID_RE.match(user_id):
            raise BadRequest("user_id must be 1-64 characters of letters, digits, '_', '.' or '-'")
        return await self.store.list_calls(limit or LIST_CALLS_DEFAULT, user_id or None)
