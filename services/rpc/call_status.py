"""The status a client-side gRPC stream really ended with.

When the server ends a stream at once (the auth interceptor refusing a token)
while the client is still writing its first message, grpc.aio fails the write
and marks the call INTERNAL "Internal error from Core"; the server's own status
arrives a moment later and replaces it. Whoever reports the end to a person
(the SDK, the web gateway) asks here, so the person reads the server's reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

__all__ = ["final_status", "is_placeholder"]

# What grpc.aio sets on a call whose write failed (grpc/_cython/_cygrpc/aio/call.pyx.pxi).
_CORE_PLACEHOLDER = (grpc.StatusCode.INTERNAL, "Internal error from Core")
_WAIT_S = 3.0  # under load (a busy 2-core CI machine) the real status took over a second
_STEP_S = 0.02


def is_placeholder(code: grpc.StatusCode, details: str) -> bool:
    """Whether this is gRPC's stand-in for a failed write rather than a status the server sent. It can
    stay for good: a failed write processed after the server's status overwrites it (grpc/grpc#36066)."""
    return (code, details) == _CORE_PLACEHOLDER


async def final_status(call: Any, code: grpc.StatusCode, details: str) -> tuple[grpc.StatusCode, str]:
    """``call``'s status, given the one an operation on it raised: the server's, once it arrived
    (waiting up to three seconds for it when gRPC's placeholder stands in), else what was raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _WAIT_S
    while (code, details) == _CORE_PLACEHOLDER and loop.time() < deadline:
        await asyncio.sleep(_STEP_S)
        try:
            code, details = await call.code(), await call.details() or ""
        except grpc.aio.AioRpcError:
            break
    return code, details
