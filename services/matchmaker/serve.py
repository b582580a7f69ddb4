"""The matchmaker process: its store, peers, replica ownership and gRPC server, from start to clean stop.

``server.py`` holds the servicers (the protobuf side); this wires them to
PostgreSQL, the routing service and the edges, takes this replica's shards
(docs/replicas.md) and runs until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import grpc

from duet.services.auth.secrets import AuthSecrets
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.edge_watch import watch_edges
from duet.services.matchmaker.gc_policy import FrozenHeap
from duet.services.matchmaker.metrics import MatchmakerMetrics
from duet.services.matchmaker.moderation_server import ModerationServicer
from duet.services.matchmaker.remote_peers import EdgeClients, RoutingClient
from duet.services.matchmaker.replicas.forwarder import SessionForwarder
from duet.services.matchmaker.replicas.ownership import POLL_INTERVAL_S, ShardOwnership, keep_shards
from duet.services.matchmaker.replicas.pg_ownership import PostgresShardOwnership
from duet.services.matchmaker.replicas.shards import ShardMap
from duet.services.matchmaker.server import MatchmakerServicer, Replicas
from duet.services.metrics.exposition import DEFAULT_METRICS_HOST, MetricsServer
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.services.store.group_commit import GroupCommitStore
from duet.services.store.postgres import Store
from duet.v1 import matchmaker_pb2_grpc, moderation_pb2_grpc

logger = logging.getLogger("duet.matchmaker.server")

__all__ = ["serve_matchmaker"]


class _ShardEvents:
    """Ownership changes, applied to the core: a shard taken over restores its tickets; one lost ends its sessions."""

    def __init__(self, mm: Matchmaker) -> None:
        self.mm = mm

    async def shard_acquired(self, shard: str) -> None:
        await self.mm.restore_shard(shard)

    async def shard_lost(self, shard: str) -> None:
        await self.mm.release_shard(
            shard, f"this matchmaker replica no longer serves shard {shard}; reconnect (your place is kept)"
        )


async def _until_every_shard_has_an_owner(ownership: ShardOwnership, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if all(ownership.owns(s) or ownership.owner_of(s) is not None for s in ownership.shards):
            return
        await asyncio.sleep(0.05)
    missing = [s for s in ownership.shards if not ownership.owns(s) and ownership.owner_of(s) is None]
    logger.warning("after %.0f s, shards %s still have no owner (replicas at their share?)", timeout_s, missing)


async def serve_matchmaker(
    routing_address: str,
    database: str,
    *,
    secrets: AuthSecrets,
    token: str,
    bind: str = "127.0.0.1:0",
    trust_forwarded_for: bool = False,
    config: MatchConfig | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Future[str] | None = None,
    metrics_port: int | None = None,
    metrics_host: str = DEFAULT_METRICS_HOST,
    replica_id: str | None = None,
    shards: ShardMap | None = None,
    ownership_poll_s: float = POLL_INTERVAL_S,
) -> None:
    """Serve until ``stop`` is set. ``secrets``: the user-token secret (clients' tokens) and the
    service-token secret (ops tokens on GetCall, and forwarding replicas' tokens); ``token``: the
    matchmaker's own service token (role matchmaker), presented to the routing service, the edges and
    other replicas. ``metrics_port`` (0 = any free) also serves Prometheus metrics (None: off).

    ``replica_id`` (default: one made from the host and process id) and ``shards`` (default: one
    shard for the world): this replica serves the shards whose advisory locks it holds in the database
    and forwards other clients' streams to their owner (docs/replicas.md)."""
    stop = stop or asyncio.Event()
    secrets.require_user("the matchmaker verifies its clients' tokens with it")
    service_secret = secrets.require_service("the matchmaker verifies ops tokens with it")
    shard_map = shards if shards is not None else ShardMap()
    replica = replica_id or f"{socket.gethostname()}-{os.getpid()}"
    store = await Store.open(database)
    # The matching path's writes (tickets, users, call records) commit in groups (group_commit.py): a
    # busy replica commits hundreds per transaction, and every one is durable before anyone is told.
    grouped = GroupCommitStore(store)
    routing = RoutingClient(routing_address, token)
    edges = EdgeClients(token)
    metrics = MatchmakerMetrics(lambda: mm.pool.waiting(), shards=lambda: mm.waiting_by_shard(), owned=lambda: owned())
    # GroupCommitStore is a MatchStore, the PostgreSQL Store a SafetyStore and FriendStore, by shape alone;
    # mypy checks it here.
    mm = Matchmaker(
        grouped, routing, edges, config=config, safety=store, friends=store, telemetry=metrics, shards=shard_map
    )
    forwarder = SessionForwarder(token)
    ownership: PostgresShardOwnership | None = None

    def owned() -> dict[str, bool]:
        return {s: ownership is not None and ownership.owns(s) for s in shard_map.shards}

    grouped.start()
    mm.start()
    servicer = MatchmakerServicer(mm, trust_forwarded_for=trust_forwarded_for, service_secret=service_secret)
    moderation = ModerationServicer(store, mm)

    def add_servicers(server: grpc.aio.Server) -> None:
        matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, server)
        moderation_pb2_grpc.add_ModerationServicer_to_server(moderation, server)

    async with contextlib.AsyncExitStack() as extras:
        # The collector's policy for a large long-lived heap (gc_policy.py): no full collection stalls matching.
        await extras.enter_async_context(FrozenHeap().running())
        try:
            server, address = await start_server(
                bind,
                add_servicers,
                interceptors=[AuthInterceptor(secrets)],
            )
        except BaseException:
            await mm.stop()
            await grouped.close()
            await store.close()
            raise
        edge_watch = asyncio.create_task(watch_edges(routing_address, token, mm), name="edge membership")
        keeper: asyncio.Task[None] | None = None
        try:
            ownership = PostgresShardOwnership(database, replica, address, shard_map.shards)
            await ownership.connect()
            servicer.replicas = Replicas(ownership, forwarder)
            # One interval for replicas started together to see each other, so they split the shards.
            await asyncio.sleep(ownership_poll_s)
            keeper = asyncio.create_task(
                keep_shards(ownership, _ShardEvents(mm), ownership_poll_s), name="shard ownership"
            )
            await _until_every_shard_has_an_owner(ownership, timeout_s=10.0)
            scrape = ""
            if metrics_port is not None:
                url = await extras.enter_async_context(
                    MetricsServer(metrics.registry, host=metrics_host, port=metrics_port)
                )
                scrape = f" metrics={url}"
            mine = ",".join(s for s in shard_map.shards if ownership.owns(s)) or "-"
            logger.info(
                "matchmaker %s serving on %s; shards %s, owning %s", replica, address, shard_map.describe(), mine
            )
            print(f"matchmaker ready address={address}{scrape} replica={replica} owns={mine}", flush=True)
            if ready is not None:
                ready.set_result(address)
            await stop.wait()
        finally:
            logger.info("matchmaker shutting down")
            for task in (edge_watch, keeper):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (edge_watch, keeper) if t is not None), return_exceptions=True)
            await servicer.stop_serving()
            # The shard locks go before the gRPC grace period, so another replica takes the shards over
            # on its next poll rather than after this process has finished stopping.
            if ownership is not None:
                await ownership.close()
            await server.stop(grace=1.0)
            await forwarder.close()
            await routing.close()
            await edges.close()
            await grouped.close()
            await store.close()
