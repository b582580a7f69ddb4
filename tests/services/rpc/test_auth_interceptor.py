"""The auth interceptor over real gRPC: the verified caller reaches handlers (unary and
streaming, and tasks they start); unlisted methods and unverifiable kinds are refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import LEEWAY_S, Role, mint_service_token, mint_user_token
from duet.services.rpc.access_policy import POLICY, services, users
from duet.services.rpc.auth import AuthInterceptor, Refusal, current_principal, current_who
from duet.services.rpc.server import start_server
from duet.v1 import routing_pb2, routing_pb2_grpc

USER, SERVICE = b"u" * 32, b"s" * 32
Code = grpc.StatusCode


class WhoAmI(routing_pb2_grpc.RoutingServicer):
    """Answers with the caller the interceptor verified."""

    async def GetTopology(
        self, request: routing_pb2.GetTopologyRequest, context: grpc.aio.ServicerContext
    ) -> routing_pb2.Topology:
        in_task = await asyncio.create_task(asyncio.sleep(0, current_who()))  # a task started here inherits it
        return routing_pb2.Topology(regions=[routing_pb2.Region(name=current_who()), routing_pb2.Region(name=in_task)])

    async def WatchRoutes(
        self, request: routing_pb2.WatchRoutesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[routing_pb2.RouteTable]:
        for version in (1, 2):
            principal = current_principal()
            yield routing_pb2.RouteTable(edge_id=principal.name if principal else "", version=version)


async def serve(policy: dict[str, object], secrets: AuthSecrets) -> tuple[grpc.aio.Server, str]:
    return await start_server(
        "127.0.0.1:0",
        lambda s: routing_pb2_grpc.add_RoutingServicer_to_server(WhoAmI(), s),
        interceptors=[AuthInterceptor(secrets, policy)],  # type: ignore[arg-type]
    )


async def test_handlers_see_the_verified_caller() -> None:
    server, address = await serve(
        {
            "/duet.v1.Routing/GetTopology": users(Role.OPS_READ),
            "/duet.v1.Routing/WatchRoutes": services(Role.EDGE, edge_id_field="edge_id"),
        },
        AuthSecrets(USER, SERVICE, "test"),
    )
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = routing_pb2_grpc.RoutingStub(ch)
            ana = bearer_metadata(mint_user_token(USER, "ana"))
            topo = await stub.GetTopology(routing_pb2.GetTopologyRequest(), metadata=ana)
            assert [r.name for r in topo.regions] == ["user:ana", "user:ana"]
            alice = bearer_metadata(mint_service_token(SERVICE, Role.OPS_READ, "alice"))
            topo = await stub.GetTopology(routing_pb2.GetTopologyRequest(), metadata=alice)
            assert topo.regions[0].name == "ops-read:alice"

            edge = bearer_metadata(mint_service_token(SERVICE, Role.EDGE, "fra-1"))
            tables = [t async for t in stub.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id="fra-1"), metadata=edge)]
            assert [(t.edge_id, t.version) for t in tables] == [("edge:fra-1", 1), ("edge:fra-1", 2)]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id="sin-1"), metadata=edge):
                    pass
            assert info.value.code() == Code.PERMISSION_DENIED
            assert info.value.details() == "WatchRoutes: this token is for edge fra-1, not sin-1"
        assert current_principal() is None and current_who() == "anonymous"  # nothing leaks out of a call
    finally:
        await server.stop(None)


async def test_a_method_without_a_policy_is_refused_whoever_calls() -> None:
    server, address = await serve({}, AuthSecrets(USER, SERVICE, "test"))
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            stub = routing_pb2_grpc.RoutingStub(ch)
            admin = bearer_metadata(mint_service_token(SERVICE, Role.OPS_ADMIN))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetTopology(routing_pb2.GetTopologyRequest(), metadata=admin)
            assert info.value.code() == Code.PERMISSION_DENIED
            assert "/duet.v1.Routing/GetTopology has no access policy" in (info.value.details() or "")
    finally:
        await server.stop(None)


async def test_a_server_without_a_kinds_secret_cannot_be_fooled_by_that_kind() -> None:
    # A routing-like server that holds only the service secret, for a method users may call.
    server, address = await serve(
        dict(POLICY) | {"/duet.v1.Routing/GetTopology": users()}, AuthSecrets(None, SERVICE, "x")
    )
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await routing_pb2_grpc.RoutingStub(ch).GetTopology(
                    routing_pb2.GetTopologyRequest(), metadata=bearer_metadata(mint_user_token(USER, "ana"))
                )
            assert info.value.code() == Code.UNAUTHENTICATED
            assert "holds no user-token secret" in (info.value.details() or "")
    finally:
        await server.stop(None)


async def test_a_malformed_authorization_value_counts_as_no_token() -> None:
    server, address = await serve(dict(POLICY), AuthSecrets(USER, SERVICE, "test"))
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            token = mint_service_token(SERVICE, Role.OPS_READ)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await routing_pb2_grpc.RoutingStub(ch).GetTopology(
                    routing_pb2.GetTopologyRequest(), metadata=(("authorization", f"Basic {token}"),)
                )
            assert info.value.code() == Code.UNAUTHENTICATED
            assert (info.value.details() or "").startswith("no token: GetTopology needs a service token")
    finally:
        await server.stop(None)


async def test_a_remembered_token_still_expires() -> None:
    now = [time.time()]
    secrets = AuthSecrets(USER, SERVICE, "test")
    interceptor = AuthInterceptor(secrets, clock=lambda: now[0])
    access = POLICY["/duet.v1.Routing/GetTopology"]
    token = mint_service_token(SERVICE, Role.OPS_READ, "alice", ttl_s=60)
    first = interceptor.authenticate("/duet.v1.Routing/GetTopology", access, token)
    assert interceptor.authenticate("/duet.v1.Routing/GetTopology", access, token) is first  # remembered
    # A remembered token is still checked against each method's policy.
    with pytest.raises(Refusal) as info:
        interceptor.authenticate("/duet.v1.EdgeControl/Bridge", POLICY["/duet.v1.EdgeControl/Bridge"], token)
    assert info.value.code == Code.PERMISSION_DENIED and "role ops-read" in info.value.details
    now[0] += 60 + LEEWAY_S + 1
    with pytest.raises(Refusal) as info:
        interceptor.authenticate("/duet.v1.Routing/GetTopology", access, token)
    assert info.value.code == Code.UNAUTHENTICATED and "token expired at" in info.value.details
