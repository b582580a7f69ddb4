"""A stream's real end status replaces gRPC's placeholder once it arrives."""

from __future__ import annotations

import asyncio

import grpc

from duet.services.rpc.call_status import final_status

Code = grpc.StatusCode


class Call:
    """A finished call whose server status arrives ``after`` seconds after its placeholder."""

    def __init__(self, after: float, real: tuple[grpc.StatusCode, str]) -> None:
        self.arrives = asyncio.get_running_loop().time() + after
        self.real = real

    def _now(self) -> tuple[grpc.StatusCode, str]:
        if asyncio.get_running_loop().time() >= self.arrives:
            return self.real
        return Code.INTERNAL, "Internal error from Core"

    async def code(self) -> grpc.StatusCode:
        return self._now()[0]

    async def details(self) -> str:
        return self._now()[1]


async def test_the_servers_status_replaces_the_placeholder() -> None:
    call = Call(0.1, (Code.UNAUTHENTICATED, "token expired"))
    assert await final_status(call, Code.INTERNAL, "Internal error from Core") == (
        Code.UNAUTHENTICATED,
        "token expired",
    )


async def test_a_real_status_is_taken_as_it_is_at_once() -> None:
    call = Call(10.0, (Code.UNAUTHENTICATED, "never asked"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await final_status(call, Code.INTERNAL, "session failed unexpectedly") == (
        Code.INTERNAL,
        "session failed unexpectedly",
    )
    assert await final_status(call, Code.UNAVAILABLE, "down") == (Code.UNAVAILABLE, "down")
    assert loop.time() - started < 0.05


async def test_the_placeholder_stays_when_nothing_else_arrives() -> None:
    call = Call(10.0, (Code.UNAUTHENTICATED, "too late"))
    assert await final_status(call, Code.INTERNAL, "Internal error from Core") == (
        Code.INTERNAL,
        "Internal error from Core",
    )
