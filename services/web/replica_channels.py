"""The gateway's matchmaker replicas: one gRPC channel each, and the order to try them in.

Any replica serves any client (one that does not own the client's shard
forwards the stream; docs/replicas.md), so the gateway may open a Session on
whichever answers. The one that last opened a stream is tried first, so a
dead replica costs only the session that found it dead.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from duet.services.client.reconnect import matchmaker_addresses
from duet.v1 import matchmaker_pb2_grpc

__all__ = ["ReplicaChannels"]


class ReplicaChannels:
    def __init__(self, addresses: str | Sequence[str]) -> None:
        """``addresses``: ``"a:1,b:2"`` or a list (the SDK's form); ValueError when none is given."""
        self.addresses = matchmaker_addresses(addresses)
        self._channels = {a: grpc.aio.insecure_channel(a) for a in self.addresses}
        self._stubs = {a: matchmaker_pb2_grpc.MatchmakerStub(c) for a, c in self._channels.items()}
        self._preferred = self.addresses[0]

    def order(self) -> list[str]:
        """Every address once: the one that last worked first, then the others as given."""
        return [self._preferred, *(a for a in self.addresses if a != self._preferred)]

    def stub(self, address: str) -> matchmaker_pb2_grpc.MatchmakerStub:
        return self._stubs[address]

    def reachable(self, address: str) -> bool:
        """The channel to ``address`` is connected (an UNAVAILABLE from it is then the matchmaker's own)."""
        return bool(self._channels[address].get_state() == grpc.ChannelConnectivity.READY)

    def worked(self, address: str) -> None:
        self._preferred = address

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
