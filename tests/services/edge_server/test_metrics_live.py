"""Edge metrics with real parts: aiortc clients bridged across two in-process edges (real UDP
backbone), scraped over HTTP on loopback; and serve_edge with --metrics-port behind a real
routing service."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from duet.routing.topology import default_topology
from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import Role, mint_service_token
from duet.services.edge_server.metrics import edge_registry
from duet.services.edge_server.server import serve_edge
from duet.services.metrics.exposition import MetricsServer
from duet.services.routing_server.server import serve_routing
from duet.services.rpc.server import CannotListen
from tests.edge.harness import KEY, close_client, make_client, two_edges

SECRETS = AuthSecrets(user=None, service=b"s" * 32, source="test")
FRA_TOKEN = mint_service_token(b"s" * 32, Role.EDGE, "fra-1")

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_bridged_call_shows_in_both_edges_metrics() -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=31)
        b, leg_b = await make_client(e2, tag=32)
        try:
            e1.bridge(5, leg_a, 0, "vir-1")
            e2.bridge(5, leg_b, 1, "fra-1")
            await b.wait_for_tag(31)
            await a.wait_for_tag(32)
            async with (
                MetricsServer(edge_registry(e1), port=0) as url1,
                MetricsServer(edge_registry(e2), port=0) as url2,
            ):
                before = e1.stats().bridges[0]
                before_in, before_out = before.packets_in, before.packets_out
                fra, vir = await asyncio.gather(_scrape(url1), _scrape(url2))
                after = e1.stats()
        finally:
            await close_client(a)
            await close_client(b)

    side = frozenset({"edge": "fra-1", "bridge_id": "5", "side": "0", "peer_edge": "vir-1"}.items())
    # the scrape read the live counters: between the snapshots taken just before and after it
    assert before_in <= fra[("duet_edge_bridge_from_client_packets_total", side)] <= after.bridges[0].packets_in
    assert before_out <= fra[("duet_edge_bridge_to_client_packets_total", side)] <= after.bridges[0].packets_out
    # bytes: at least an RTP header per packet, at most a full datagram
    sent_bytes = fra[("duet_edge_bridge_from_client_bytes_total", side)]
    assert 12 * before_in <= sent_bytes <= 1500 * after.bridges[0].packets_in
    fra_edge = frozenset({"edge": "fra-1"}.items())
    assert (
        fra[("duet_edge_backbone_sent_bytes_total", fra_edge)]
        > fra[("duet_edge_backbone_sent_packets_total", fra_edge)]
    )
    assert before_in > 0 and before_out > 0
    assert fra[("duet_edge_legs", frozenset({"edge": "fra-1"}.items()))] == 1
    assert fra[("duet_edge_backbone_sent_packets_total", frozenset({"edge": "fra-1"}.items()))] > 0
    vir_side = frozenset({"edge": "vir-1", "bridge_id": "5", "side": "1", "peer_edge": "fra-1"}.items())
    assert vir[("duet_edge_bridge_to_client_packets_total", vir_side)] > 0
    assert vir[("duet_edge_backbone_received_packets_total", frozenset({"edge": "vir-1"}.items()))] > 0


async def _ready_line(capsys: pytest.CaptureFixture[str], prefix: str, task: asyncio.Task[None]) -> str:
    seen = ""
    for _ in range(200):
        seen += capsys.readouterr().out
        for line in seen.splitlines():
            if line.startswith(prefix) and " ready " in line:
                return line
        if task.done():
            task.result()
            raise AssertionError(f"{prefix} ended before it was ready")
        await asyncio.sleep(0.05)
    raise AssertionError(f"no ready line from {prefix}: {seen!r}")


def _field(line: str, key: str) -> str:
    return next(part.split("=", 1)[1] for part in line.split() if part.startswith(key + "="))


async def test_serve_edge_serves_metrics_at_the_address_its_ready_line_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = asyncio.Event()
    routing = asyncio.create_task(serve_routing(default_topology(), secrets=SECRETS, stop=stop))
    edge: asyncio.Task[None] | None = None
    try:
        routing_address = _field(await _ready_line(capsys, "routing", routing), "address")
        edge = asyncio.create_task(
            serve_edge("fra-1", routing_address, KEY, secrets=SECRETS, token=FRA_TOKEN, metrics_port=0, stop=stop)
        )
        url = _field(await _ready_line(capsys, "edge fra-1", edge), "metrics")
        got = await _scrape(url)
        assert got[("duet_edge_legs", frozenset({"edge": "fra-1"}.items()))] == 0
        assert any(name == "process_resident_memory_bytes" for name, _ in got)
    finally:
        stop.set()
        await asyncio.gather(routing, *([edge] if edge else []))
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))  # stopped with the edge


async def test_serve_edge_refuses_a_taken_metrics_port_in_words() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen, match=f"cannot serve metrics on 127.0.0.1:{port}: the port is taken"):
            await asyncio.wait_for(
                serve_edge("fra-1", "127.0.0.1:1", KEY, secrets=SECRETS, token=FRA_TOKEN, metrics_port=port), 10
            )
