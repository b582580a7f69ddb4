"""Starting a gRPC server and stopping it cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence

import grpc


class CannotListen(OSError):
    """The address to serve on is taken, or not one of this machine's."""


async def start_server(
    bind: str,
    add_servicers: Callable[[grpc.aio.Server], None],
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, str]:
    """Start a grpc.aio server on ``bind`` (host:port, port 0 = any free); returns it and its address.

    Duet's servers pass ``duet.services.rpc.auth.AuthInterceptor`` in ``interceptors``.
    Raises ``CannotListen`` when the address cannot be bound.
    """
    # No SO_REUSEPORT: a second server on a taken port must fail, not share it silently.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=list(interceptors))
    add_servicers(server)
    host = bind.rpartition(":")[0] or "127.0.0.1"
    try:
        port = server.add_insecure_port(bind)
    except RuntimeError as exc:  # grpcio's way of saying the bind failed
        raise CannotListen(f"cannot listen on {bind}: the port is taken or the address is not this machine's") from exc
    if port == 0:
        raise CannotListen(f"cannot listen on {bind}: the port is taken or the address is not this machine's")
    await server.start()
    return server, f"{host}:{port}"


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM set ``stop`` so servers shut down cleanly instead of dying mid-call."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError):  # not the main thread, or the loop is closing
            pass
