"""Forwarding a client's Session stream to the replica that owns its shard.

The client's stream stays on the replica it reached; this opens a second
Session stream from that replica to the owner and passes every message
through, both ways, unread. The owner authenticates the user from the user's
own bearer token, and takes the client's address from the forwarding
metadata (``forwarded_for``). When the owner's stream fails, the error says
so; the servers turn it into the client's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from duet.services.auth.bearer import bearer_metadata
from duet.services.matchmaker.replicas.forwarded_for import forwarding_metadata
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

logger = logging.getLogger("duet.matchmaker.replicas")


class OwnerStreamFailed(Exception):
    """The owner's stream ended with a status other than OK (``code``, ``details`` as it sent them)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class SessionForwarder:
    """One channel per owner address, kept for the replica's life (``close()`` ends them)."""

    def __init__(self, replica_token: str) -> None:
        self.replica_token = replica_token
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> matchmaker_pb2_grpc.MatchmakerStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        return matchmaker_pb2_grpc.MatchmakerStub(channel)

    async def forward(
        self,
        address: str,
        requests: AsyncIterator[matchmaker_pb2.ClientMessage],
        *,
        user_token: str,
        client_ip: str,
    ) -> AsyncIterator[matchmaker_pb2.ServerMessage]:
        """The owner's messages for the client; raises OwnerStreamFailed when the owner's stream fails."""
        call = self._stub(address).Session(
            metadata=(*bearer_metadata(user_token), *forwarding_metadata(client_ip, self.replica_token))
        )
        pump = asyncio.create_task(_pump(requests, call), name=f"forward to {address}")
        try:
            try:
                async for message in call:
                    yield message
            except grpc.aio.AioRpcError as exc:
                raise OwnerStreamFailed(exc.code(), exc.details() or "") from None
        finally:
            # The owner's stream first, before any await: a second cancel of this handler must not leave it open.
            call.cancel()
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()


async def _pump(requests: AsyncIterator[matchmaker_pb2.ClientMessage], call: grpc.aio.StreamStreamCall) -> None:
    """The client's messages to the owner, then half-close; stops quietly when the owner's stream is over."""
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        async for message in requests:
            await call.write(message)
        await call.done_writing()
