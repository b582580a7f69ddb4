"""Authentication on the real cluster (routing, matchmaker, three edges, PostgreSQL, gRPC/TCP):
every control-plane RPC refuses callers without the right credential, nothing changes when
it does, and nobody can take over a user's session by knowing the user id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.message import Message

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role, mint_service_token, mint_user_token
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.rpc.access_policy import POLICY
from duet.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    edge_pb2,
    edge_pb2_grpc,
    matchmaker_pb2,
    matchmaker_pb2_grpc,
    moderation_pb2,
    moderation_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
)
from tests.services.matchmaker.grpc_harness import refused_stream

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Code = grpc.StatusCode
Metadata = tuple[tuple[str, str], ...]
STRANGER = "203.0.113.66"  # TEST-NET-3: addresses no edge of the cluster has


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-auth")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


def as_service(cluster: ClusterInfo, role: Role, subject: str | None = None) -> Metadata:
    return bearer_metadata(cluster.service_token(role, subject))


# Each control-plane RPC with a request that would change something (or be answered) if it got through.
CONTROL_PLANE: dict[str, tuple[str, Message]] = {
    "/duet.v1.Routing/PickIngress": ("routing", routing_pb2.PickIngressRequest(client_ip="8.8.8.8")),
    "/duet.v1.Routing/PickRoute": ("routing", routing_pb2.PickRouteRequest(from_edge_id="fra-1", to_edge_id="sin-1")),
    "/duet.v1.Routing/RegisterEdge": (
        "routing",
        routing_pb2.RegisterEdgeRequest(
            edge_id="fra-1",
            control_address=f"{STRANGER}:4000",
            backbone_address=f"{STRANGER}:4001",
            media_host=STRANGER,
        ),
    ),
    "/duet.v1.Routing/WatchRoutes": ("routing", routing_pb2.WatchRoutesRequest(edge_id="fra-1")),
    "/duet.v1.Routing/GetTopology": ("routing", routing_pb2.GetTopologyRequest()),
    # Zero legs and no readings: what fra-1 would report when idle, so a served one changes nothing.
    "/duet.v1.Routing/Heartbeat": ("routing", routing_pb2.HeartbeatRequest(edge_id="fra-1")),
    "/duet.v1.Routing/WatchMembership": ("routing", routing_pb2.WatchMembershipRequest()),
    "/duet.v1.EdgeControl/AttachLeg": ("edge", edge_pb2.AttachLegRequest(session_id="intruder", offer_sdp="v=0")),
    "/duet.v1.EdgeControl/DetachLeg": ("edge", edge_pb2.DetachLegRequest(leg_id="some-leg")),
    "/duet.v1.EdgeControl/Bridge": (
        "edge",
        edge_pb2.BridgeRequest(bridge_id=7, leg_id="some-leg", side=0, peer_edge_id="sin-1"),
    ),
    "/duet.v1.EdgeControl/Unbridge": ("edge", edge_pb2.UnbridgeRequest(bridge_id=7, side=0)),
    "/duet.v1.EdgeControl/GetStats": ("edge", edge_pb2.GetStatsRequest()),
    "/duet.v1.Matchmaker/GetCall": ("matchmaker", matchmaker_pb2.GetCallRequest(call_id="some-call")),
    "/duet.v1.Matchmaker/ListFriends": ("matchmaker", matchmaker_pb2.ListFriendsRequest()),
    "/duet.v1.Matchmaker/RemoveFriend": ("matchmaker", matchmaker_pb2.RemoveFriendRequest(user_id="ben")),
    "/duet.v1.Matchmaker/ListCalls": ("matchmaker", matchmaker_pb2.ListCallsRequest(limit=1)),
    "/duet.v1.Moderation/ListHeld": ("moderation", moderation_pb2.ListHeldRequest()),
    "/duet.v1.Moderation/ListReports": ("moderation", moderation_pb2.ListReportsRequest(user_id="ana")),
    "/duet.v1.Moderation/ClearHold": ("moderation", moderation_pb2.ClearHoldRequest(user_id="ana")),
    "/duet.v1.TopologyAdmin/GetTopologyFile": ("admin", admin_pb2.GetTopologyFileRequest()),
    "/duet.v1.TopologyAdmin/ListTopologyChanges": ("admin", admin_pb2.ListTopologyChangesRequest()),
    "/duet.v1.TopologyAdmin/ApplyTopology": ("admin", admin_pb2.ApplyTopologyRequest(text="regions: [Frankfurt]\n")),
    "/duet.v1.TopologyAdmin/SetEdgeState": (
        "admin",
        admin_pb2.SetEdgeStateRequest(edge_id="fra-1", state=common_pb2.EDGE_STATE_DOWN),
    ),
    "/duet.v1.TopologyAdmin/SetLink": ("admin", admin_pb2.SetLinkRequest(a="fra-1", b="vir-1", up=False)),
}
STUBS: dict[str, Callable[[grpc.aio.Channel], Any]] = {
    "routing": routing_pb2_grpc.RoutingStub,
    "edge": edge_pb2_grpc.EdgeControlStub,
    "matchmaker": matchmaker_pb2_grpc.MatchmakerStub,
    "admin": admin_pb2_grpc.TopologyAdminStub,
    "moderation": moderation_pb2_grpc.ModerationStub,
}


def address_of(cluster: ClusterInfo, server: str) -> str:
    return {
        "routing": cluster.routing,
        "admin": cluster.routing,
        "edge": cluster.edges["fra-1"],
        "matchmaker": cluster.matchmaker,
        "moderation": cluster.matchmaker,
    }[server]


async def status_of(cluster: ClusterInfo, method: str, metadata: Metadata) -> tuple[grpc.StatusCode, str]:
    """The status ``method`` ends with when called with ``metadata`` (OK: it was served)."""
    server, request = CONTROL_PLANE[method]
    async with grpc.aio.insecure_channel(address_of(cluster, server)) as ch:
        rpc = getattr(STUBS[server](ch), method.rsplit("/", 1)[1])
        try:
            if method.endswith(("WatchRoutes", "WatchMembership")):
                stream = rpc(request, metadata=metadata, timeout=5)
                await stream.read()  # the first message, or the refusal
                stream.cancel()
            else:
                await rpc(request, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return Code.OK, ""


async def test_every_control_plane_rpc_is_covered_here() -> None:
    assert set(CONTROL_PLANE) == set(POLICY) - {"/duet.v1.Matchmaker/Session"}


@pytest.mark.parametrize("method", sorted(CONTROL_PLANE))
async def test_no_bad_or_unfit_credential_gets_through(cluster: ClusterInfo, method: str) -> None:
    access = POLICY[method]
    short = method.rsplit("/", 1)[1]
    code, details = await status_of(cluster, method, ())
    assert code == Code.UNAUTHENTICATED and details.startswith(f"no token: {short} needs"), details

    stolen_secret = b"x" * 32  # a token signed with anything but this cluster's secret
    forged = (
        mint_service_token(stolen_secret, Role.OPS_ADMIN) if access.roles else mint_user_token(stolen_secret, "ana")
    )
    code, details = await status_of(cluster, method, bearer_metadata(forged))
    assert code == Code.UNAUTHENTICATED and "signature does not match" in details, details

    an_hour_ago = time.time() - 3600
    role = sorted(access.roles)[0] if access.roles else None
    expired = (
        mint_service_token(cluster.secrets.service, role, "fra-1", ttl_s=60, now=an_hour_ago)  # type: ignore[arg-type]
        if role is not None
        else mint_user_token(cluster.secrets.user, "ana", ttl_s=60, now=an_hour_ago)  # type: ignore[arg-type]
    )
    code, details = await status_of(cluster, method, bearer_metadata(expired))
    assert code == Code.UNAUTHENTICATED and "token expired at" in details and "mint a new one" in details, details

    if not access.users:
        code, details = await status_of(cluster, method, bearer_metadata(cluster.user_token("ana")))
        assert code == Code.PERMISSION_DENIED and "this is a user token" in details, details
    for wrong in sorted(set(Role) - access.roles):
        code, details = await status_of(
            cluster, method, as_service(cluster, wrong, "fra-1" if wrong is Role.EDGE else None)
        )
        # A method for users only refuses every service token as such; one with roles names the role it wants.
        wanted = f"role {wrong})" if access.roles else "this is a service token"
        assert code == Code.PERMISSION_DENIED and wanted in details, (wrong, details)


async def test_the_right_credential_gets_through(cluster: ClusterInfo) -> None:
    # The statuses past the door are the methods' own: the same requests reach the handlers.
    mm = as_service(cluster, Role.MATCHMAKER)
    assert (await status_of(cluster, "/duet.v1.Routing/PickIngress", mm))[0] == Code.OK
    assert (await status_of(cluster, "/duet.v1.EdgeControl/AttachLeg", mm))[0] == Code.INVALID_ARGUMENT
    assert (await status_of(cluster, "/duet.v1.EdgeControl/GetStats", as_service(cluster, Role.OPS_READ, "ana")))[
        0
    ] == Code.OK
    assert (await status_of(cluster, "/duet.v1.Routing/GetTopology", as_service(cluster, Role.OPS_ADMIN)))[0] == Code.OK
    assert (await status_of(cluster, "/duet.v1.Routing/WatchRoutes", as_service(cluster, Role.EDGE, "fra-1")))[
        0
    ] == Code.OK
    code, _ = await status_of(cluster, "/duet.v1.Matchmaker/GetCall", bearer_metadata(cluster.user_token("ana")))
    assert code == Code.NOT_FOUND
    assert (await status_of(cluster, "/duet.v1.Routing/Heartbeat", as_service(cluster, Role.EDGE, "fra-1")))[
        0
    ] == Code.OK
    assert (await status_of(cluster, "/duet.v1.Routing/WatchMembership", mm))[0] == Code.OK
    moderator = as_service(cluster, Role.OPS_ADMIN, "mo")
    assert (await status_of(cluster, "/duet.v1.Moderation/ListHeld", as_service(cluster, Role.OPS_READ, "vik")))[
        0
    ] == Code.OK
    assert (await status_of(cluster, "/duet.v1.Moderation/ClearHold", moderator))[0] in (
        Code.NOT_FOUND,  # no user "ana" in this cluster's database yet
        Code.FAILED_PRECONDITION,  # or no report about her
    )


async def topology(cluster: ClusterInfo) -> dict[str, tuple[str, str, str]]:
    async with grpc.aio.insecure_channel(cluster.routing) as ch:
        topo = await routing_pb2_grpc.RoutingStub(ch).GetTopology(
            routing_pb2.GetTopologyRequest(), metadata=as_service(cluster, Role.OPS_READ, "auth-test")
        )
    return {e.edge_id: (e.control_address, e.backbone_address, e.media_host) for e in topo.edges}


async def test_an_edge_token_registers_and_watches_only_its_own_edge(cluster: ClusterInfo) -> None:
    before = await topology(cluster)
    assert before["fra-1"][0] == cluster.edges["fra-1"] and STRANGER not in str(before)
    fra = as_service(cluster, Role.EDGE, "fra-1")
    async with grpc.aio.insecure_channel(cluster.routing) as ch:
        stub = routing_pb2_grpc.RoutingStub(ch)
        hijack = routing_pb2.RegisterEdgeRequest(
            edge_id="sin-1", control_address=f"{STRANGER}:1", backbone_address=f"{STRANGER}:2", media_host=STRANGER
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RegisterEdge(hijack, metadata=fra, timeout=5)
        assert info.value.code() == Code.PERMISSION_DENIED
        assert info.value.details() == "RegisterEdge: this token is for edge fra-1, not sin-1"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id="sin-1"), metadata=fra, timeout=5).read()
        assert info.value.code() == Code.PERMISSION_DENIED

        # Its own edge, with the addresses it has: accepted (what the edge does after a routing restart).
        control, backbone, media = before["fra-1"]
        own = routing_pb2.RegisterEdgeRequest(
            edge_id="fra-1", control_address=control, backbone_address=backbone, media_host=media
        )
        reply = await stub.RegisterEdge(own, metadata=fra, timeout=5)
        assert reply.edge.edge_id == "fra-1"
    # Nothing any refused call above (or in the other tests) asked for took effect.
    assert await topology(cluster) == before


async def test_the_audit_log_names_the_verified_caller_and_refused_changes_leave_no_trace(cluster: ClusterInfo) -> None:
    async with grpc.aio.insecure_channel(cluster.routing) as ch:
        admin = admin_pb2_grpc.TopologyAdminStub(ch)
        reader = as_service(cluster, Role.OPS_READ, "bob")
        before = await admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest(), metadata=reader)
        # ops-read may look but not change; what it asked for is not applied or logged.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await admin.SetLink(admin_pb2.SetLinkRequest(a="fra-1", b="vir-1", loss=0.5), metadata=reader)
        assert info.value.code() == Code.PERMISSION_DENIED
        assert info.value.details() == (
            "SetLink needs a service token (role ops-admin); this token is for ops-read:bob (role ops-read)"
        )
        after = await admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest(), metadata=reader)
        assert list(after.changes) == list(before.changes)

        alice = as_service(cluster, Role.OPS_ADMIN, "alice")
        changed = await admin.SetLink(
            admin_pb2.SetLinkRequest(a="fra-1", b="vir-1", loss=0.001), metadata=(*alice, ("x-duet-actor", "mallory"))
        )
        assert changed.applied
        await admin.SetLink(admin_pb2.SetLinkRequest(a="fra-1", b="vir-1", loss=0.0), metadata=alice)  # as it was
        log = await admin.ListTopologyChanges(admin_pb2.ListTopologyChangesRequest(limit=2), metadata=reader)
    assert [(c.actor, c.action) for c in log.changes] == [("ops-admin:alice", "link"), ("ops-admin:alice", "link")]


# -- the Session: identity from the token ---------------------------------------------


def hello(user: str) -> matchmaker_pb2.ClientMessage:
    return matchmaker_pb2.ClientMessage(hello=matchmaker_pb2.Hello(user_id=user, display_name=user))


async def refused(cluster: ClusterInfo, metadata: Metadata, user: str) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
        return await refused_stream(matchmaker_pb2_grpc.MatchmakerStub(ch), metadata, [hello(user)])


async def test_nobody_takes_over_a_session_without_the_users_token(cluster: ClusterInfo) -> None:
    user = "auth-ana"
    async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        real = stub.Session(metadata=bearer_metadata(cluster.user_token(user)))
        await real.write(hello(user))
        first = await asyncio.wait_for(real.read(), 10)
        assert first.WhichOneof("msg") == "edge_assigned"

        an_hour_ago = time.time() - 3600
        attempts = {
            "none": ((), Code.UNAUTHENTICATED, "no token: Session needs a user token"),
            "expired": (
                bearer_metadata(mint_user_token(cluster.secrets.user, user, ttl_s=60, now=an_hour_ago)),  # type: ignore[arg-type]
                Code.UNAUTHENTICATED,
                "token expired at",
            ),
            "forged": (
                bearer_metadata(mint_user_token(b"guessed-secret-guessed-secret-32", user)),
                Code.UNAUTHENTICATED,
                "signature does not match",
            ),
            "other user": (
                bearer_metadata(cluster.user_token("auth-mallory")),
                Code.UNAUTHENTICATED,
                f"token is for user auth-mallory, not {user}",
            ),
            "service": (as_service(cluster, Role.MATCHMAKER), Code.PERMISSION_DENIED, "this is a service token"),
        }
        for name, (metadata, code, words) in attempts.items():
            err = await refused(cluster, metadata, user)
            assert err.code() == code and words in (err.details() or ""), (name, err.details())

        # The real session was not touched: no CallEnded "replaced ...", and it still answers.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(real.read()), 0.5)
        await real.write(matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner()))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(real.read(), 5)
        assert info.value.code() == Code.FAILED_PRECONDITION  # no leg yet: the session itself answered


async def test_the_users_own_token_still_replaces_their_older_session(cluster: ClusterInfo) -> None:
    # The contrast that shows the test above could fail: with the right token, a newer session wins.
    user = "auth-ben"
    async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        old = stub.Session(metadata=bearer_metadata(cluster.user_token(user)))
        await old.write(hello(user))
        assert (await asyncio.wait_for(old.read(), 10)).WhichOneof("msg") == "edge_assigned"
        new = stub.Session(metadata=bearer_metadata(cluster.user_token(user)))
        await new.write(matchmaker_pb2.ClientMessage(hello=matchmaker_pb2.Hello()))  # user id from the token
        assert (await asyncio.wait_for(new.read(), 10)).WhichOneof("msg") == "edge_assigned"
        ended = await asyncio.wait_for(old.read(), 10)
        assert ended.call_ended.reason == "replaced by a newer session"
        await new.write(matchmaker_pb2.ClientMessage(leave=matchmaker_pb2.Leave()))
        assert await asyncio.wait_for(new.read(), 5) is grpc.aio.EOF
