"""The matchmaker process: the Session stream and GetCall over ``Matchmaker``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from duet.services.matchmaker.core import Matchmaker, SessionError, stage_times
from duet.services.matchmaker.remote_peers import EdgeClients, RoutingClient
from duet.services.rpc.errors import map_errors
from duet.services.rpc.server import start_server
from duet.services.store.postgres import Store
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

logger = logging.getLogger("duet.matchmaker.server")


def peer_ip(context: grpc.aio.ServicerContext, trust_forwarded_for: bool) -> str:
    """The client's address: the proxy-supplied one when trusted, else the TCP peer."""
    if trust_forwarded_for:
        for key, value in context.invocation_metadata() or ():
            if key == "x-forwarded-for" and value:
                return str(value).split(",")[0].strip()
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]").replace("%5B", "").replace("%5D", "")
    return "127.0.0.1"


def _side(user: str, edge: str, leg: str, stages: dict[str, float]) -> matchmaker_pb2.CallSide:
    first = stages.get("first_frame", 0.0)
    return matchmaker_pb2.CallSide(
        user_id=user,
        edge_id=edge,
        leg_id=leg,
        stages=stage_times(stages),
        connect_ms=first - stages["matched"] if first and stages.get("matched") else 0.0,
        total_ms=first - stages["queued"] if first and stages.get("queued") else 0.0,
    )


class MatchmakerServicer(matchmaker_pb2_grpc.MatchmakerServicer):
    def __init__(self, matchmaker: Matchmaker, *, trust_forwarded_for: bool = False) -> None:
        self.mm = matchmaker
        self.trust_forwarded_for = trust_forwarded_for

    async def Session(
        self, request_iterator: AsyncIterator[matchmaker_pb2.ClientMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[matchmaker_pb2.ServerMessage]:
        outbox: asyncio.Queue[object] = asyncio.Queue()
        holder: dict[str, object] = {}
        reader = asyncio.create_task(self._read(request_iterator, context, outbox, holder))
        try:
            while True:
                item = await outbox.get()
                if item is None:
                    break
                if isinstance(item, SessionError):
                    await context.abort(item.code, str(item))
                assert isinstance(item, matchmaker_pb2.ServerMessage)
                yield item
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            session = holder.get("session")
            if session is not None:
                await asyncio.shield(self.mm.close_session(session, holder.get("end", "stream closed")))  # type: ignore[arg-type]

    async def _read(
        self,
        requests: AsyncIterator[matchmaker_pb2.ClientMessage],
        context: grpc.aio.ServicerContext,
        outbox: asyncio.Queue[object],
        holder: dict[str, object],
    ) -> None:
        try:
            session = None
            async for msg in requests:
                kind = msg.WhichOneof("msg")
                if session is None:
                    if kind != "hello":
                        raise SessionError(
                            grpc.StatusCode.INVALID_ARGUMENT, "the first message on a Session stream must be hello"
                        )
                    session = await self.mm.open_session(msg.hello, peer_ip(context, self.trust_forwarded_for), outbox)
                    holder["session"] = session
                    continue
                if kind == "hello":
                    raise SessionError(grpc.StatusCode.INVALID_ARGUMENT, "hello was already sent on this stream")
                elif kind == "offer":
                    await self.mm.attach_leg(session, msg.offer)
                elif kind == "find_partner":
                    await self.mm.find_partner(session)
                elif kind == "next":
                    await self.mm.next(session)
                elif kind == "leave":
                    holder["end"] = "leave"
                    break
                elif kind == "connect_report":
                    await self.mm.connect_report(session, msg.connect_report)
                else:
                    raise SessionError(grpc.StatusCode.INVALID_ARGUMENT, "empty ClientMessage: set one of its fields")
            outbox.put_nowait(None)
        except SessionError as exc:
            logger.info("session error: %s", exc)
            outbox.put_nowait(exc)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            logger.warning("session ended by a downstream failure: %s", exc.details())
            outbox.put_nowait(SessionError(grpc.StatusCode.UNAVAILABLE, f"a backing service failed: {exc.details()}"))
        except Exception as exc:
            logger.exception("session failed")
            outbox.put_nowait(SessionError(grpc.StatusCode.INTERNAL, f"session failed unexpectedly: {exc!r}"))

    @map_errors({ValueError: grpc.StatusCode.INVALID_ARGUMENT, LookupError: grpc.StatusCode.NOT_FOUND})
    async def GetCall(
        self, request: matchmaker_pb2.GetCallRequest, context: grpc.aio.ServicerContext
    ) -> matchmaker_pb2.CallRecord:
        if not request.call_id:
            raise ValueError("call_id is required")
        row = await self.mm.store.get_call(request.call_id)
        if row is None:
            raise LookupError(f"no call '{request.call_id}'")
        return matchmaker_pb2.CallRecord(
            call_id=row.call_id,
            a=_side(row.user_a, row.edge_a, row.leg_a, row.stages_a),
            b=_side(row.user_b, row.edge_b, row.leg_b, row.stages_b),
            route=row.route,
            route_rtt_ms=row.route_rtt_ms,
            state=row.state,
            end_reason=row.end_reason or "",
        )


async def serve_matchmaker(
    routing_address: str,
    database: str,
    *,
    bind: str = "127.0.0.1:0",
    trust_forwarded_for: bool = False,
    stop: asyncio.Event | None = None,
    ready: asyncio.Future[str] | None = None,
) -> None:
    stop = stop or asyncio.Event()
    store = await Store.open(database)
    routing = RoutingClient(routing_address)
    edges = EdgeClients()
    mm = Matchmaker(store, routing, edges)
    servicer = MatchmakerServicer(mm, trust_forwarded_for=trust_forwarded_for)
    server, address = await start_server(
        bind, lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, s)
    )
    logger.info("matchmaker serving on %s", address)
    print(f"matchmaker ready address={address}", flush=True)
    if ready is not None:
        ready.set_result(address)
    try:
        await stop.wait()
    finally:
        logger.info("matchmaker shutting down")
        await mm.stop()
        await server.stop(grace=1.0)
        await routing.close()
        await edges.close()
        await store.close()
