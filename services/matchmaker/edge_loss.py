"""A dead edge's sessions moved to other edges: the calls and tickets it carried end, each client
gets a new edge and offers a new leg, as at the start.

A part of ``Matchmaker`` (a base class of it), kept apart so the core's file
holds sessions and the pool.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from duet.services.matchmaker import ring as rings
from duet.services.matchmaker.call_setup import CallSetup
from duet.services.matchmaker.events import EdgeAssigned, EdgeLost, NoEdge
from duet.services.matchmaker.ports import PeerError
from duet.services.matchmaker.session_state import ClientSession
from duet.services.matchmaker.ticket import Ticket

logger = logging.getLogger("duet.matchmaker")


class EdgeLoss(CallSetup):
    """Re-attaching the sessions of a lost edge; the sessions are the ``Matchmaker``'s."""

    sessions: dict[str, ClientSession]

    if TYPE_CHECKING:  # provided by the Matchmaker

        async def _close_ticket(
            self, session: ClientSession | None, ticket: Ticket, outcome: str, reason: str
        ) -> None: ...

    async def edge_lost(self, edge_id: str, reason: str) -> None:
        """``edge_id`` died (the routing service saw it fall silent): move its sessions to other edges.

        Each session on it gets EdgeLost; its call ends ("edge_lost", the
        partner "partner_edge_lost") and its ticket is cancelled; then it gets
        EdgeAssigned with a new edge and offers a new leg as at the start.
        """
        lost = [s for s in self.sessions.values() if s.edge is not None and s.edge.edge_id == edge_id]
        if lost:
            logger.warning("edge %s lost (%s): re-attaching %d sessions", edge_id, reason, len(lost))
        for session in lost:
            await self._reattach(session, edge_id, reason)

    async def _reattach(self, session: ClientSession, edge_id: str, reason: str) -> None:
        session.send(EdgeLost(edge_id=edge_id, reason=reason))
        # The edge is gone: nothing to unbridge or detach there.
        session.edge, session.leg_id, session.video = None, None, None
        if session.ring is not None:
            # The leg a friend call would bridge is gone: the ring ends (the caller can ring again on the new leg).
            self._end_ring(session.ring, rings.EDGE_LOST)
        if session.call is not None:
            await self._end_call(session.call, "edge_lost", ender=session)
        if session.ticket is not None:
            await self._close_ticket(session, session.ticket, "cancelled: edge lost", "edge_lost")
        try:
            ingress = await self.routing.pick_ingress(session.client_ip)
        except PeerError as exc:
            session.outbox.put_nowait(NoEdge(f"edge {edge_id} was lost and no other edge could be assigned: {exc}"))
            return
        if session.closed:
            return
        session.edge = ingress.edge
        session.region = ingress.edge.region
        session.send(
            EdgeAssigned(
                session_id=session.session_id, edge=ingress.edge, reason=ingress.reason, assigned_at=self.now_ms()
            )
        )
        logger.info("session %s: re-attached to edge %s (%s)", session.session_id[:8], ingress.edge.edge_id, reason)
