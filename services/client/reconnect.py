"""Reconnecting a client whose matchmaker went away: which address next, how long to wait, and when.

A matchmaker replica that dies, or gives up the shard a client is in, ends the
client's Session stream UNAVAILABLE. The SDK then opens a new session (a new
stream and a new leg) on the next matchmaker address it was given, backing off
between tries, and asks for a partner again: the replica now serving the
shard resumes the open ticket with its original place in the queue
(docs/replicas.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from duet.services.client.inbox import DuetClientError

__all__ = ["ReconnectPolicy", "is_reconnectable", "matchmaker_addresses", "worth_another_try"]

# A new session refused for these would be refused again: the request or the token is at fault.
REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


def matchmaker_addresses(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"a:1,b:2"`` or ``["a:1", "b:2"]`` -> ("a:1", "b:2"); ValueError when none is given."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    addresses = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not addresses:
        raise ValueError("no matchmaker address given (HOST:PORT, or several separated by commas)")
    return addresses


@dataclass(frozen=True)
class ReconnectPolicy:
    """Up to ``attempts`` new sessions in a row, waiting ``first_delay_s``, doubling up to ``max_delay_s``."""

    attempts: int = 10
    first_delay_s: float = 0.2
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError(
                f"a reconnect policy needs attempts >= 1 and 0 <= first_delay_s <= max_delay_s, got {self}"
            )

    def delays(self) -> Iterator[float]:
        """The wait before each attempt: none before the first (another replica may be up already)."""
        delay = self.first_delay_s
        for attempt in range(self.attempts):
            yield 0.0 if attempt == 0 else delay
            if attempt:
                delay = min(self.max_delay_s, delay * 2)


def is_reconnectable(error: DuetClientError) -> bool:
    """The stream ended because the matchmaker (or its shard) went away, not because of the request."""
    return bool(error.code == grpc.StatusCode.UNAVAILABLE)


def worth_another_try(error: DuetClientError) -> bool:
    """A new session that could not be opened: try the next address unless it was refused as such.

    Dialling a dead replica can fail with gRPC's own placeholder (INTERNAL) when the
    connection is refused before its status arrives: that is worth another try too.
    """
    return error.code not in REFUSALS
