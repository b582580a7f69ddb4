"""Library errors -> gRPC statuses, in one decorator per servicer method."""

from __future__ import annotations

import asyncio
import functools
import logging
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
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"{fn.__name__} failed unexpectedly: {exc!r}; see the server log"
                )

        return wrapper  # type: ignore[return-value]

    return decorate
