"""Where a client gets the token it presents: a fixed one, or one minted on demand.

A token source is any ``async () -> str``; the SDK asks it once per Session it
opens, so a long-running client (the greeter bot) never presents a stale one.
Minting needs the user-token secret, which only the app's own server (or a
local cluster, in development) holds: ``DevUserTokens`` is for those.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from duet.services.auth.tokens import DEFAULT_USER_TTL_S, mint_user_token

__all__ = ["DevUserTokens", "StaticToken", "TokenSource"]

TokenSource = Callable[[], Awaitable[str]]


class StaticToken:
    """The same token every time (one the caller was given)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def __call__(self) -> str:
        return self.token


class DevUserTokens:
    """A fresh token for ``user_id`` each time, minted with the user-token secret."""

    def __init__(self, secret: bytes, user_id: str, *, ttl_s: float = DEFAULT_USER_TTL_S) -> None:
        self.secret = secret
        self.user_id = user_id
        self.ttl_s = ttl_s
        mint_user_token(secret, user_id, ttl_s=ttl_s)  # a bad user id or secret fails here, not at connect

    async def __call__(self) -> str:
        return mint_user_token(self.secret, self.user_id, ttl_s=self.ttl_s)
