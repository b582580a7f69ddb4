"""Starting a gRPC server and stopping it cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import grpc


async def start_server(bind: str, add_servicers: Callable[[grpc.aio.Server], None]) -> tuple[grpc.aio.Server, str]:
    """Start a grpc.aio server on ``bind`` (host:port, port 0 = any free); returns it and its address."""
    server = grpc.aio.server()
    add_servicers(server)
    host = bind.rpartition(":")[0] or "127.0.0.1"
    port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"cannot listen on {bind}")
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
