"""Bad input to every RPC gets the right status and a message a person can act on,
and the servers keep serving afterwards (real processes over gRPC/TCP)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from duet.edge.backbone_wire import BackboneHeader, PacketType, StreamKind, pack
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import edge_pb2, edge_pb2_grpc, matchmaker_pb2, matchmaker_pb2_grpc, routing_pb2, routing_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Code = grpc.StatusCode


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-bad-input")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


def mm(cluster: ClusterInfo) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(cluster.service_token(Role.MATCHMAKER))


def ops(cluster: ClusterInfo) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(cluster.service_token(Role.OPS_READ, "bad-input-test"))


def edge_token(cluster: ClusterInfo, edge_id: str) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(cluster.service_token(Role.EDGE, edge_id))


async def expect_status(call, code: grpc.StatusCode, *words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    for word in words:
        assert word in info.value.details(), info.value.details()


async def test_routing_rejects_bad_input(cluster: ClusterInfo) -> None:
    async with grpc.aio.insecure_channel(cluster.routing) as ch:
        stub = routing_pb2_grpc.RoutingStub(ch)
        await expect_status(
            stub.PickIngress(routing_pb2.PickIngressRequest(), metadata=mm(cluster)), Code.INVALID_ARGUMENT, "client_ip"
        )
        await expect_status(
            stub.PickIngress(routing_pb2.PickIngressRequest(client_ip="not-an-ip"), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "not-an-ip",
        )
        await expect_status(
            stub.PickIngress(
                routing_pb2.PickIngressRequest(
                    client_ip="8.8.8.8", probes=[routing_pb2.ProbeResult(edge_id="fra-1", rtt_ms=-5)]
                ),
                metadata=mm(cluster),
            ),
            Code.INVALID_ARGUMENT,
            "probe",
        )
        await expect_status(
            stub.PickRoute(routing_pb2.PickRouteRequest(from_edge_id="fra-1"), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "to_edge_id",
        )
        await expect_status(
            stub.PickRoute(
                routing_pb2.PickRouteRequest(from_edge_id="fra-1", to_edge_id="mars-1"), metadata=mm(cluster)
            ),
            Code.NOT_FOUND,
            "mars-1",
        )
        await expect_status(
            stub.RegisterEdge(
                routing_pb2.RegisterEdgeRequest(
                    edge_id="mars-1",
                    control_address="127.0.0.1:1",
                    backbone_address="127.0.0.1:2",
                    media_host="127.0.0.1",
                ),
                metadata=edge_token(cluster, "mars-1"),
            ),
            Code.NOT_FOUND,
            "mars-1",
        )
        await expect_status(
            stub.RegisterEdge(
                routing_pb2.RegisterEdgeRequest(
                    edge_id="fra-1", control_address="nowhere", backbone_address="127.0.0.1:2", media_host="127.0.0.1"
                ),
                metadata=edge_token(cluster, "fra-1"),
            ),
            Code.INVALID_ARGUMENT,
            "control_address",
        )
        # A port other edges could not send to must never reach their route tables.
        for port in ("0", "99999"):
            await expect_status(
                stub.RegisterEdge(
                    routing_pb2.RegisterEdgeRequest(
                        edge_id="fra-1",
                        control_address="127.0.0.1:1",
                        backbone_address=f"127.0.0.1:{port}",
                        media_host="127.0.0.1",
                    ),
                    metadata=edge_token(cluster, "fra-1"),
                ),
                Code.INVALID_ARGUMENT,
                "1..65535",
            )

        async def first_table(edge_id: str) -> routing_pb2.RouteTable:
            request = routing_pb2.WatchRoutesRequest(edge_id=edge_id)
            async for table in stub.WatchRoutes(request, metadata=edge_token(cluster, edge_id or "fra-1")):
                return table
            raise AssertionError("no table")

        # An edge token always names its edge, so an empty edge_id is another edge's, not this one's.
        await expect_status(first_table(""), Code.PERMISSION_DENIED, "not (none)")
        await expect_status(first_table("mars-1"), Code.NOT_FOUND, "mars-1")
        # still serving, topology untouched by the refused registrations
        topo = await stub.GetTopology(routing_pb2.GetTopologyRequest(), metadata=ops(cluster))
        assert {e.edge_id for e in topo.edges} == {"fra-1", "vir-1", "sin-1"}
        assert all(e.control_address in cluster.edges.values() for e in topo.edges)
        route = await stub.PickRoute(
            routing_pb2.PickRouteRequest(from_edge_id="fra-1", to_edge_id="sin-1"), metadata=mm(cluster)
        )
        assert route.path[0] == "fra-1" and route.path[-1] == "sin-1"


async def test_edge_rejects_bad_input(cluster: ClusterInfo) -> None:
    async with grpc.aio.insecure_channel(cluster.edges["fra-1"]) as ch:
        stub = edge_pb2_grpc.EdgeControlStub(ch)
        await expect_status(
            stub.AttachLeg(edge_pb2.AttachLegRequest(offer_sdp="v=0"), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "session_id",
        )
        await expect_status(
            stub.AttachLeg(edge_pb2.AttachLegRequest(session_id="s", offer_sdp=""), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "empty",
        )
        await expect_status(
            stub.AttachLeg(edge_pb2.AttachLegRequest(session_id="s", offer_sdp="hello there"), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "SDP",
        )
        await expect_status(
            stub.AttachLeg(
                edge_pb2.AttachLegRequest(session_id="s", offer_sdp="v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"),
                metadata=mm(cluster),
            ),
            Code.INVALID_ARGUMENT,
            "video",
        )
        await expect_status(
            stub.Bridge(
                edge_pb2.BridgeRequest(bridge_id=1, leg_id="nope", side=0, peer_edge_id="vir-1"), metadata=mm(cluster)
            ),
            Code.NOT_FOUND,
            "nope",
        )
        await expect_status(
            stub.Bridge(edge_pb2.BridgeRequest(bridge_id=1, leg_id="nope", side=0), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "peer_edge_id",
        )
        await expect_status(
            stub.Bridge(
                edge_pb2.BridgeRequest(bridge_id=0, leg_id="nope", side=0, peer_edge_id="vir-1"), metadata=mm(cluster)
            ),
            Code.INVALID_ARGUMENT,
            "bridge_id",
        )
        await expect_status(
            stub.Bridge(
                edge_pb2.BridgeRequest(bridge_id=1, leg_id="nope", side=5, peer_edge_id="vir-1"), metadata=mm(cluster)
            ),
            Code.INVALID_ARGUMENT,
            "side",
        )
        await expect_status(
            stub.Unbridge(edge_pb2.UnbridgeRequest(bridge_id=99, side=0), metadata=mm(cluster)), Code.NOT_FOUND, "99"
        )
        await expect_status(
            stub.Unbridge(edge_pb2.UnbridgeRequest(bridge_id=0, side=0), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "bridge_id",
        )
        await expect_status(
            stub.Unbridge(edge_pb2.UnbridgeRequest(bridge_id=99, side=5), metadata=mm(cluster)),
            Code.INVALID_ARGUMENT,
            "side",
        )
        await expect_status(
            stub.DetachLeg(edge_pb2.DetachLegRequest(leg_id="nope"), metadata=mm(cluster)), Code.NOT_FOUND, "nope"
        )
        await expect_status(
            stub.DetachLeg(edge_pb2.DetachLegRequest(), metadata=mm(cluster)), Code.INVALID_ARGUMENT, "leg_id"
        )
        stats = await stub.GetStats(edge_pb2.GetStatsRequest(), metadata=mm(cluster))
        assert stats.edge_id == "fra-1"


async def test_edge_survives_garbage_on_the_backbone(cluster: ClusterInfo) -> None:
    async with grpc.aio.insecure_channel(cluster.routing) as ch:
        topo = await routing_pb2_grpc.RoutingStub(ch).GetTopology(
            routing_pb2.GetTopologyRequest(), metadata=ops(cluster)
        )
    fra = next(e for e in topo.edges if e.edge_id == "fra-1")
    host, port = fra.backbone_address.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        header = BackboneHeader(
            ptype=PacketType.MEDIA, dest_edge=fra.number, src_edge=2, bridge_id=5, side=0, kind=StreamKind.VIDEO, ttl=4
        )
        for datagram in (
            b"",
            b"\x00" * 3,
            b"DU\x01" + b"\xff" * 40,
            pack(header, b"\x80" * 20, b"wrong key"),
            bytes(range(256)) * 4,
        ):
            sock.sendto(datagram, (host, int(port)))
    finally:
        sock.close()
    await asyncio.sleep(0.2)
    async with grpc.aio.insecure_channel(cluster.edges["fra-1"]) as ch:
        stats = await edge_pb2_grpc.EdgeControlStub(ch).GetStats(edge_pb2.GetStatsRequest(), metadata=ops(cluster))
    assert sum(n for reason, n in stats.dropped.items() if reason.startswith("bad datagram")) >= 4


async def session_error(
    cluster: ClusterInfo, *messages: matchmaker_pb2.ClientMessage, user: str = "bad-input-user"
) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
        call = matchmaker_pb2_grpc.MatchmakerStub(ch).Session(metadata=bearer_metadata(cluster.user_token(user)))
        for m in messages:
            await call.write(m)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        return info.value


def hello(user: str = "bad-input-user") -> matchmaker_pb2.ClientMessage:
    return matchmaker_pb2.ClientMessage(hello=matchmaker_pb2.Hello(user_id=user, display_name="x"))


async def test_matchmaker_rejects_bad_sessions(cluster: ClusterInfo) -> None:
    err = await session_error(cluster, matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner()))
    assert err.code() == Code.INVALID_ARGUMENT and "first message" in err.details()
    # The session is the token's user's: a Hello naming anyone else is refused.
    err = await session_error(cluster, hello("no spaces allowed"))
    assert (
        err.code() == Code.UNAUTHENTICATED
        and "token is for user bad-input-user, not no spaces allowed" in err.details()
    )
    err = await session_error(cluster, hello(), matchmaker_pb2.ClientMessage(find_partner=matchmaker_pb2.FindPartner()))
    assert err.code() == Code.FAILED_PRECONDITION and "offer" in err.details()
    err = await session_error(
        cluster, hello(), matchmaker_pb2.ClientMessage(offer=matchmaker_pb2.LegOffer(sdp="garbage"))
    )
    assert err.code() == Code.INVALID_ARGUMENT and "SDP" in err.details()
    err = await session_error(cluster, hello(), matchmaker_pb2.ClientMessage())
    assert err.code() == Code.INVALID_ARGUMENT and "empty" in err.details()
    err = await session_error(cluster, hello(), matchmaker_pb2.ClientMessage(next=matchmaker_pb2.Next()))
    assert err.code() == Code.FAILED_PRECONDITION and "offer" in err.details()

    async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
        stub = matchmaker_pb2_grpc.MatchmakerStub(ch)
        await expect_status(
            stub.GetCall(matchmaker_pb2.GetCallRequest(), metadata=ops(cluster)), Code.INVALID_ARGUMENT, "call_id"
        )
        await expect_status(
            stub.GetCall(matchmaker_pb2.GetCallRequest(call_id="nope"), metadata=ops(cluster)), Code.NOT_FOUND, "nope"
        )


async def test_a_call_still_connects_after_all_that(cluster: ClusterInfo) -> None:
    a = synthetic_client(
        cluster.matchmaker,
        "after-a",
        "A",
        tag=71,
        client_ip=DEMO_CLIENT_IPS["Singapore"],
        token=cluster.user_tokens("after-a"),
    )
    b = synthetic_client(
        cluster.matchmaker,
        "after-b",
        "B",
        tag=72,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("after-b"),
    )
    try:
        await asyncio.gather(a.connect(), b.connect())
        ra, rb = await asyncio.gather(a.find_partner(), b.find_partner())
    finally:
        await asyncio.gather(a.leave(), b.leave())
    assert ra.first_marker is not None and ra.first_marker.tag == 72
    assert rb.first_marker is not None and rb.first_marker.tag == 71
