"""The control-plane delay proxy: real TCP on loopback, real gRPC through it."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from duet.routing.reference import measured_rtt_ms
from duet.routing.topology import world_topology
from duet.services.devkit.wan import ControlPlane, LinkProfile, TcpDelayProxy, WanConfig
from duet.services.devkit.wan.edge import edge_control_plane

TOLERANCE_S = 0.040  # a loaded 2-core machine: generous, but far below the delays tested


class Upstream:
    """A TCP server that records when each chunk arrives and can answer or hang up."""

    def __init__(self, *, close_on_eof: bool = True) -> None:
        self.close_on_eof = close_on_eof
        self.arrivals: list[tuple[bytes, float]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.eof = asyncio.Event()
        self.got_data = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.address = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        loop = asyncio.get_running_loop()
        while data := await reader.read(65536):
            self.arrivals.append((data, loop.time()))
            self.got_data.set()
        self.eof.set()
        if self.close_on_eof:  # as a gRPC server does
            writer.close()

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()


async def test_each_direction_is_delayed_by_its_own_profile() -> None:
    loop = asyncio.get_running_loop()
    async with (
        Upstream() as up,
        TcpDelayProxy(up.address, LinkProfile(delay_ms=80), LinkProfile(delay_ms=40)) as address,
    ):
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        sent = loop.time()
        writer.write(b"hello")
        await asyncio.wait_for(up.got_data.wait(), 2)
        data, arrived = up.arrivals[0]
        assert data == b"hello"
        assert 0.080 <= arrived - sent < 0.080 + TOLERANCE_S

        replied = loop.time()
        up.writers[0].write(b"world")
        assert await asyncio.wait_for(reader.readexactly(5), 2) == b"world"
        assert 0.040 <= loop.time() - replied < 0.040 + TOLERANCE_S
        writer.close()
        await writer.wait_closed()


async def test_bytes_stay_in_order_under_jitter_and_are_all_counted() -> None:
    async with (
        Upstream() as up,
        TcpDelayProxy(up.address, LinkProfile(delay_ms=10, jitter_ms=8, seed=5)) as address,
    ):
        host, port = address.rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        payload = b"".join(i.to_bytes(2, "big") for i in range(3000))
        for i in range(0, len(payload), 100):
            writer.write(payload[i : i + 100])
            await asyncio.sleep(0)
        writer.write_eof()
        await asyncio.wait_for(up.eof.wait(), 2)
        assert b"".join(d for d, _ in up.arrivals) == payload
        writer.close()


async def test_client_close_reaches_upstream_after_the_delay_and_nothing_is_left() -> None:
    loop = asyncio.get_running_loop()
    async with Upstream() as up:
        proxy = TcpDelayProxy(up.address, LinkProfile(delay_ms=50))
        address = await proxy.start()
        host, port = address.rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"bye")
        closed = loop.time()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(up.eof.wait(), 2)
        assert loop.time() - closed >= 0.050
        assert up.arrivals[0][0] == b"bye"  # the data before the end arrives first
        await _until_no_connections(proxy)
        await proxy.close()
    assert proxy.counters.accepted == 1 and proxy.counters.to_upstream_bytes == 3


async def _until_no_connections(proxy: TcpDelayProxy) -> None:
    for _ in range(50):
        if not proxy.connections:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(proxy.connections)} relayed connection(s) still open")


async def test_a_half_close_each_way_ends_the_connection() -> None:
    async with Upstream(close_on_eof=False) as up:
        proxy = TcpDelayProxy(up.address, LinkProfile(delay_ms=20))
        address = await proxy.start()
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"request")
        writer.write_eof()
        await asyncio.wait_for(up.eof.wait(), 2)
        up.writers[0].write(b"reply")
        up.writers[0].write_eof()  # the upstream half-closes too, but keeps its socket open
        assert await asyncio.wait_for(reader.read(), 2) == b"reply"
        writer.close()
        await _until_no_connections(proxy)
        await proxy.close()


async def test_a_dropped_upstream_closes_the_client_side() -> None:
    loop = asyncio.get_running_loop()
    async with (
        Upstream() as up,
        TcpDelayProxy(up.address, LinkProfile(delay_ms=30)) as address,
    ):
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"x")
        await asyncio.wait_for(up.got_data.wait(), 2)
        up.writers[0].write(b"last words")
        dropped = loop.time()
        up.writers[0].transport.abort()  # the upstream dies: a reset, not a polite close
        assert await asyncio.wait_for(reader.read(), 2) == b"last words"  # then EOF: the client side is closed
        assert loop.time() - dropped >= 0.030
        writer.close()


async def test_an_unreachable_upstream_closes_the_client_and_is_counted() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead = f"127.0.0.1:{probe.sockets[0].getsockname()[1]}"
    probe.close()
    await probe.wait_closed()
    async with TcpDelayProxy(dead, LinkProfile(delay_ms=5)) as address:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


def test_a_stream_profile_with_loss_or_reordering_is_refused() -> None:
    with pytest.raises(ValueError, match="never dropped"):
        TcpDelayProxy("127.0.0.1:9", LinkProfile(delay_ms=5, loss=0.1))
    with pytest.raises(ValueError, match="never dropped"):
        TcpDelayProxy("127.0.0.1:9", LinkProfile(delay_ms=5), LinkProfile(jitter_ms=3, reorder=True))
    with pytest.raises(ValueError, match="HOST:PORT"):
        TcpDelayProxy("nowhere", LinkProfile(delay_ms=5))


async def test_a_grpc_call_through_the_proxy_pays_one_delay_each_way() -> None:
    def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    loop = asyncio.get_running_loop()
    try:
        async with (
            TcpDelayProxy(f"127.0.0.1:{port}", LinkProfile(delay_ms=60)) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            call = channel.unary_unary("/test.Echo/Echo")
            assert await call(b"warm", timeout=5) == b"warm"  # the connection is set up
            started = loop.time()
            assert await call(b"ping", timeout=5) == b"ping"
            elapsed = loop.time() - started
        assert 0.120 <= elapsed < 0.120 + TOLERANCE_S
    finally:
        await server.stop(None)


def test_control_plane_delays_come_from_the_topology() -> None:
    world = world_topology()
    control = ControlPlane("Frankfurt", world)
    assert control.one_way_ms("Frankfurt") == 0.5  # the intra-region RTT / 2
    assert control.one_way_ms("Virginia") == measured_rtt_ms("Frankfurt", "Virginia") / 2  # type: ignore[operator]
    assert control.to_edge("syd-1").delay_ms == control.one_way_ms("Sydney") > 100
    assert control.to_region("Tokyo", extra_ms=15).delay_ms == control.one_way_ms("Tokyo") + 15
    config = WanConfig.from_dict(json.loads('{"control": {"region": "Sydney", "topology": "world"}}'))
    assert config.enabled and config.control is not None and config.control.region == "Sydney"
    with pytest.raises(ValueError, match="not in the topology"):
        WanConfig.from_dict({"control": {"region": "Atlantis", "topology": "world"}})
    with pytest.raises(ValueError, match="name the region"):
        WanConfig.from_dict({"control": {"topology": "world"}})
    with pytest.raises(ValueError, match="unknown keys"):
        WanConfig.from_dict({"control": {"region": "Frankfurt", "loss": 0.1}})


async def test_an_edge_dials_routing_and_is_dialled_through_proxies_delayed_by_its_region() -> None:
    loop = asyncio.get_running_loop()
    config = WanConfig.from_dict({"control": {"region": "Frankfurt", "topology": "world"}})
    one_way = measured_rtt_ms("Frankfurt", "Sydney") / 2  # type: ignore[operator]
    async with (
        Upstream() as routing,
        Upstream() as control,
        edge_control_plane(config, "syd-1", routing=routing.address, control=control.address) as (r, c),
    ):
        assert r != routing.address and c != control.address
        for address, upstream in ((r, routing), (c, control)):
            host, port = address.rsplit(":", 1)
            _, writer = await asyncio.open_connection(host, int(port))
            sent = loop.time()
            writer.write(b"x")
            await asyncio.wait_for(upstream.got_data.wait(), 2)
            assert one_way / 1000 <= upstream.arrivals[0][1] - sent < one_way / 1000 + TOLERANCE_S
            writer.close()
    async with edge_control_plane(WanConfig(), "syd-1", routing="127.0.0.1:1", control="127.0.0.1:2") as both:
        assert both == ("127.0.0.1:1", "127.0.0.1:2")  # no control region: nothing in between
    with pytest.raises(ValueError, match="not in the control plane's topology"):
        async with edge_control_plane(config, "xyz-9", routing="127.0.0.1:1", control="127.0.0.1:2"):
            pass
