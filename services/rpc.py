"""Shared gRPC plumbing: library errors -> statuses, server start, graceful stop."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

logger = logging.getLogger("duet.rpc")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def map_errors(mapping: Mapping[type[Exception], grpc.StatusCode]) -> Callable[[F], F]:
    """Turn the library exceptions an RPC may raise into statuses with their message.

    Anything unexpected becomes INTERNAL with a pointer to the log, never a
    crash of the server.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await fn(self, request, context)
            except grpc.aio.AbortError:
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                for exc_type, code in mapping.items():
                    if isinstance(exc, exc_type):
                        await context.abort(code, str(exc))
                logger.exception("%s failed", fn.__name__)
                await context.abort(grpc.StatusCode.INTERNAL, f"{fn.__name__} failed unexpectedly: {exc!r}; see the server log")

        return wrapper  # type: ignore[return-value]

    return decorate


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


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aiortc/aioice are chatty at INFO about every candidate pair.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
