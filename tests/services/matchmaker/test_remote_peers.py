"""The gRPC clients of routing and the edges speak the ports' language: plain values, port errors."""

from __future__ import annotations

import grpc
import pytest

from duet.services.matchmaker.ports import (
    EdgeInfo,
    EdgeState,
    PeerError,
    PeerInvalidRequest,
    PeerNotFound,
    PeerNotReady,
    PeerUnavailable,
)
from duet.services.matchmaker.remote_peers import EdgeClients, RoutingClient, edge_info, edge_state, peer_error
from duet.services.matchmaker.server_messages import edge_ref
from duet.v1 import common_pb2

Code = grpc.StatusCode


def rpc_error(code: grpc.StatusCode, details: str | None) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (Code.INVALID_ARGUMENT, PeerInvalidRequest),
        (Code.FAILED_PRECONDITION, PeerNotReady),
        (Code.NOT_FOUND, PeerNotFound),
        (Code.UNAVAILABLE, PeerUnavailable),
        (Code.DEADLINE_EXCEEDED, PeerUnavailable),
        (Code.INTERNAL, PeerUnavailable),
        (Code.OUT_OF_RANGE, PeerUnavailable),  # the matchmaker has only ever passed INVALID_ARGUMENT on
    ],
)
def test_a_failed_rpc_becomes_the_port_error_for_its_status(code: grpc.StatusCode, kind: type[PeerError]) -> None:
    err = peer_error(rpc_error(code, "leg 'x' is not ready"))
    assert type(err) is kind and str(err) == "leg 'x' is not ready"
    assert str(peer_error(rpc_error(code, None))) == code.name


@pytest.mark.parametrize("state", list(EdgeState))
def test_edge_refs_and_edge_info_convert_both_ways(state: EdgeState) -> None:
    edge = EdgeInfo("sin-1", 3, "Singapore", "127.0.0.1:5", "127.0.0.1:6", "10.0.0.3", state)
    assert edge_info(edge_ref(edge)) == edge


def test_an_edge_state_this_build_does_not_know_is_unspecified() -> None:
    assert edge_state(99) is EdgeState.UNSPECIFIED
    assert edge_state(common_pb2.EDGE_STATE_DOWN) is EdgeState.DOWN


async def test_an_unreachable_peer_is_unavailable() -> None:
    nowhere = "127.0.0.1:1"
    routing, edges = RoutingClient(nowhere, "a.b.c"), EdgeClients("a.b.c")
    edge = EdgeInfo("fra-1", 1, "Frankfurt", nowhere, "127.0.0.1:2", "127.0.0.1", EdgeState.ACTIVE)
    try:
        with pytest.raises(PeerUnavailable):
            await routing.pick_ingress("1.2.3.4")
        with pytest.raises(PeerUnavailable):
            await edges.attach_leg(edge, "s1", "v=0")
        with pytest.raises(PeerUnavailable):
            await edges.unbridge(edge, 7, 0)
    finally:
        await routing.close()
        await edges.close()
