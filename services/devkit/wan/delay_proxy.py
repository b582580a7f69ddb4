"""A TCP delay proxy: control-plane traffic between emulated regions (a test facility).

The matchmaker and routing service run in one region; their gRPC to clients
and edges elsewhere crosses the WAN. :class:`TcpDelayProxy` listens on
loopback and relays each accepted connection to one upstream address,
holding every chunk of bytes for the profile's one-way delay in each
direction, so a request pays the delay one way and its reply the other way.

Each direction is one :class:`~duet.services.devkit.wan.shaper.LinkShaper`
(one event-loop timer, bytes kept in order), and end of stream travels the
same way: a half-close or a dropped connection reaches the other side after
the data sent before it, one delay later. A stream never loses bytes, so a
profile with loss (or reordering) is refused. The TCP handshake itself is
not delayed: the proxy accepts at once and connects upstream at once; only
bytes and the end of the stream are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from duet.services.devkit.wan.profile import LinkProfile
from duet.services.devkit.wan.shaper import LinkShaper

__all__ = ["ProxyCounters", "TcpDelayProxy", "split_address"]

logger = logging.getLogger("duet.devkit.wan")

# What a held item is: bytes, the end of the stream (half-close), or the end of the connection.
_DATA, _EOF, _CLOSE = "data", "eof", "close"


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``[::1]:port``) -> (host, port); ValueError saying what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


@dataclass
class ProxyCounters:
    """What a proxy relayed, for tests and logs."""

    accepted: int = 0
    to_upstream_bytes: int = 0
    to_client_bytes: int = 0
    upstream_failures: int = 0  # connections closed because the upstream could not be reached


class _Side(asyncio.Protocol):
    """One TCP connection of a proxied pair (the client's or the upstream's)."""

    def __init__(self, conn: _Connection, name: str) -> None:
        self.conn = conn
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.outbound: _Pipe | None = None  # what this side received goes out through it, delayed
        self.lost = False
        self.eof_seen = False  # this side half-closed: it sends no more

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=256 * 1024)

    def data_received(self, data: bytes) -> None:
        if self.outbound is not None:
            self.outbound.push(data)

    def eof_received(self) -> bool:
        self.eof_seen = True
        if self.outbound is not None:
            self.outbound.push_end(_EOF)
        return True  # half-close: keep writing what the other side still sends

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.outbound is not None:
            self.outbound.push_end(_CLOSE)
        self.conn.side_lost()

    # Flow control: a full write buffer here stops reading from the other side.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.resume_reading()


class _Pipe:
    """One direction of a proxied connection: bytes and the stream's end, delayed, in order."""

    def __init__(self, profile: LinkProfile, sink: _Side, count: Any, salt: str) -> None:
        self.sink = sink
        self._count = count  # adds the bytes delivered to the proxy's counters
        self._pending: list[tuple[bytes, str]] = []  # due before the sink connected (upstream still connecting)
        self._ended = False
        self.shaper = LinkShaper(profile, self._deliver, salt=salt)

    def push(self, data: bytes) -> None:
        if not self._ended:
            self.shaper.submit(data, _DATA)

    def push_end(self, kind: str) -> None:
        if not self._ended:
            self._ended = kind == _CLOSE
            self.shaper.submit(b"", kind)

    def _deliver(self, data: bytes, kind: str) -> None:
        if self.sink.transport is None:
            self._pending.append((data, kind))
            return
        self._write(data, kind)

    def sink_connected(self) -> None:
        pending, self._pending = self._pending, []
        for data, kind in pending:
            self._write(data, kind)

    def _write(self, data: bytes, kind: str) -> None:
        transport = self.sink.transport
        assert transport is not None
        if transport.is_closing():
            return
        if kind == _DATA:
            transport.write(data)
            self._count(len(data))
        elif kind == _EOF:
            if self.sink.eof_seen:  # both ways ended: the connection is over
                transport.close()
                peer = self.sink.peer
                if peer is not None and peer.transport is not None:
                    peer.transport.close()
            elif transport.can_write_eof():
                transport.write_eof()
        else:
            transport.close()  # after what is buffered

    def close(self) -> None:
        self.shaper.close()


class _Connection:
    """A client connection and its upstream connection, with a delayed pipe each way."""

    def __init__(self, proxy: TcpDelayProxy, number: int) -> None:
        self.proxy = proxy
        self.client = _Side(self, "client")
        self.upstream = _Side(self, "upstream")
        self.client.peer, self.upstream.peer = self.upstream, self.client
        counters = proxy.counters

        def to_upstream(n: int) -> None:
            counters.to_upstream_bytes += n

        def to_client(n: int) -> None:
            counters.to_client_bytes += n

        self.client.outbound = _Pipe(proxy.to_upstream, self.upstream, to_upstream, f"{proxy.name}/{number}/up")
        self.upstream.outbound = _Pipe(proxy.to_client, self.client, to_client, f"{proxy.name}/{number}/down")

    def side_lost(self) -> None:
        if self.client.lost and (self.upstream.lost or self.upstream.transport is None):
            self.close()

    def abort(self) -> None:
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.lost:
                side.transport.abort()
        self.close()

    def close(self) -> None:
        for side in (self.client, self.upstream):
            if side.outbound is not None:
                side.outbound.close()
        self.proxy.connections.discard(self)


class TcpDelayProxy:
    """Listen on ``host:port`` and relay every connection to ``upstream``, delayed each way.

    ``to_upstream`` applies to bytes from the client toward the upstream,
    ``to_client`` to the replies (default: the same profile). Use as an async
    context manager (its value is the listening address, ``host:port``) or
    :meth:`start` / :meth:`close`; closing stops listening and aborts every
    relayed connection.
    """

    def __init__(
        self,
        upstream: str,
        to_upstream: LinkProfile,
        to_client: LinkProfile | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "",
    ) -> None:
        for what, profile in (("to_upstream", to_upstream), ("to_client", to_client)):
            if profile is not None and (profile.loss or profile.reorder):
                raise ValueError(f"{what}: a TCP stream is delayed, never dropped or reordered (loss 0, reorder false)")
        self.upstream_host, self.upstream_port = split_address(upstream)
        self.upstream = upstream
        self.to_upstream = to_upstream
        self.to_client = to_client if to_client is not None else to_upstream
        self.host = host
        self.port = port
        self.name = name or f"proxy->{upstream}"
        self.counters = ProxyCounters()
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._numbers = 0
        self.address = ""

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> str:
        """Start listening; returns ``host:port`` (the port the kernel chose when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, self.host, self.port)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"{self.host}:{port}"
        return self.address

    def _accept(self) -> _Side:
        self._numbers += 1
        self.counters.accepted += 1
        conn = _Connection(self, self._numbers)
        self.connections.add(conn)
        task = asyncio.create_task(self._connect_upstream(conn), name=f"{self.name} connect")
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return conn.client

    async def _connect_upstream(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: conn.upstream, self.upstream_host, self.upstream_port)
        except OSError as exc:
            self.counters.upstream_failures += 1
            logger.warning("%s: cannot reach %s (%s); closing the client's connection", self.name, self.upstream, exc)
            if conn.client.transport is not None:
                conn.client.transport.close()
            conn.close()
            return
        assert conn.client.outbound is not None
        # What came due while connecting, including the client's end if it already left.
        conn.client.outbound.sink_connected()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connecting):
            task.cancel()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
