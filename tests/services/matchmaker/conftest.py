"""Fixtures for the matchmaker's tests: ``service`` serves the Session RPC over the fakes (``mm_store`` is its store)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from duet.services.auth.secrets import AuthSecrets
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.server import MatchmakerServicer
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.v1 import matchmaker_pb2_grpc
from tests.services.matchmaker.grpc_harness import EDGES, SERVICE_SECRET, USER_SECRET, Service

Code = grpc.StatusCode


@pytest.fixture
def mm_store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
async def service(mm_store: InMemoryStore) -> AsyncIterator[Service]:
    routing, edges = FakeRouting(EDGES), FakeEdges()
    mm = Matchmaker(mm_store, routing, edges)
    servicer = MatchmakerServicer(mm)
    server, address = await start_server(
        "127.0.0.1:0",
        lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, s),
        interceptors=[AuthInterceptor(AuthSecrets(USER_SECRET, SERVICE_SECRET, "test"))],
    )
    try:
        yield Service(address, mm, routing, edges)
    finally:
        await mm.stop()
        await server.stop(None)
