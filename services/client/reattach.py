"""After EdgeLost: a new leg on the edge the matchmaker assigns. A part of ``DuetClient`` (a base class of it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from duet.services.client.media import MediaLeg
from duet.v1 import common_pb2

logger = logging.getLogger("duet.client")


class EdgeReattach:
    """Moving the warm leg off a lost edge; the leg and the stream are the ``DuetClient``'s."""

    user_id: str
    edge: common_pb2.EdgeRef | None
    leg_id: str
    stages: dict[str, float]
    clock: Callable[[], float]
    reattached: int
    _lost_edge: str | None
    _lock: asyncio.Lock
    _media: MediaLeg

    if TYPE_CHECKING:  # provided by DuetClient

        def _check_ready(self) -> None: ...

        async def _open_leg(self) -> None: ...

    @property
    def edge_lost(self) -> str | None:
        """The id of the edge the matchmaker said was lost, until :meth:`reattach` moved the leg off it."""
        return self._lost_edge

    async def reattach(self) -> None:
        """After EdgeLost: drop the dead leg and bring a new one up on the edge the matchmaker assigns.

        find_partner() and next() do this themselves first when an edge was
        lost; call it directly to be ready (leg connected) before that.
        """
        async with self._lock:
            self._check_ready()
            await self._reattach_unlocked()

    async def _reattach_unlocked(self) -> None:
        lost = self._lost_edge
        if lost is None:
            return
        t0 = self.clock()
        await self._media.reset()
        self.leg_id = ""
        await self._open_leg()
        self._lost_edge = None
        self.reattached += 1
        assert self.edge is not None
        logger.info(
            "%s: re-attached from lost edge %s to %s in %.0f ms (leg %s)",
            self.user_id,
            lost,
            self.edge.edge_id,
            self.stages["leg_connected"] - t0,
            self.leg_id,
        )
