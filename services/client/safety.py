"""Block and report the partner of a call: a part of ``DuetClient`` (a base class of it)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from duet.services.client.inbox import DuetClientError, SessionInbox
from duet.v1 import matchmaker_pb2


class SafetyRequests:
    """Block and Report on the session stream; the stream and its inbox are the ``DuetClient``'s."""

    call_id: str | None
    rpc_timeout: float
    _lock: asyncio.Lock
    _inbox: SessionInbox
    _live_call: str | None

    if TYPE_CHECKING:  # provided by DuetClient

        def _check_ready(self) -> None: ...

        async def _send(self, message: matchmaker_pb2.ClientMessage, what: str) -> None: ...

    async def block(self, call_id: str | None = None) -> None:
        """Never meet the partner of this call (default: the current or last one) again.

        A live call with them ends. Raises DuetClientError when the matchmaker refuses.
        """
        await self._safety_request("block", call_id, "")

    async def report(self, reason: str = "", call_id: str | None = None) -> None:
        """Report the partner of this call (default: the current or last one) for review."""
        await self._safety_request("report", call_id, reason)

    async def _safety_request(self, kind: str, call_id: str | None, reason: str) -> None:
        async with self._lock:
            self._check_ready()
            target = call_id or self.call_id
            if not target:
                raise DuetClientError(f"nothing to {kind}: no call yet")
            if kind == "block":
                message = matchmaker_pb2.ClientMessage(block=matchmaker_pb2.Block(call_id=target))
                if target == self._live_call:
                    self._inbox.finished_calls.add(target)  # the block ends it: no error
            else:
                message = matchmaker_pb2.ClientMessage(report=matchmaker_pb2.Report(call_id=target, reason=reason))
            await self._send(message, kind.title())
            answer = "blocked" if kind == "block" else "reported"
            await self._inbox.expect((answer,), timeout=self.rpc_timeout, waiting_for=f"the {kind} to be recorded")
