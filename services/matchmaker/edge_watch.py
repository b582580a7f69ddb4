"""How the matchmaker learns that an edge died: it watches the routing service's membership.

The routing service already decides liveness for routing (heartbeats, a
silence timeout); one stream here reuses that decision, so clients are moved
off an edge exactly when routes and ingress stop using it, within about 2 s
of its last heartbeat, whether or not the matchmaker was talking to it. A
failed leg RPC alone would notice only when the matchmaker next called that
edge, and could not tell a dead edge from one slow call.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from duet.services.auth.bearer import bearer_metadata
from duet.services.matchmaker.core import Matchmaker
from duet.v1 import routing_pb2, routing_pb2_grpc

logger = logging.getLogger("duet.matchmaker.edges")


async def watch_edges(routing_address: str, token: str, matchmaker: Matchmaker) -> None:
    """Follow ``Routing.WatchMembership`` until cancelled, reconnecting when it breaks."""
    metadata = bearer_metadata(token)
    delay = 0.1
    async with grpc.aio.insecure_channel(routing_address) as channel:
        stub = routing_pb2_grpc.RoutingStub(channel)
        while True:
            try:
                async for event in stub.WatchMembership(routing_pb2.WatchMembershipRequest(), metadata=metadata):
                    delay = 0.1
                    if not event.alive:
                        await matchmaker.edge_lost(event.edge_id, event.reason)
            except grpc.aio.AioRpcError as exc:
                logger.warning("edge membership watch ended (%s: %s); reconnecting", exc.code().name, exc.details())
            except Exception:  # moving sessions failed: log, keep watching
                logger.exception("handling an edge membership event failed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
