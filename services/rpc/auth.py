"""The servers' authentication: every call's token checked against the access policy.

``AuthInterceptor`` runs before each handler. It finds the method's line in
``access_policy.POLICY`` (no line: refused), reads the ``authorization: Bearer``
metadata, verifies the token with the secret of its kind, checks the role (and,
for edge tokens, that the request names the token's own edge), and only then
runs the handler, with the verified caller available from ``current_principal()``.

Refusals, always with a message that says what to do:
    UNAUTHENTICATED    no token, or one that proves nothing (expired, forged, malformed)
    PERMISSION_DENIED  a valid token that may not call this method (kind, role, edge id)
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

import grpc

from duet.services.auth.bearer import AUTHORIZATION, parse_bearer
from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import (
    LEEWAY_S,
    ExpiredToken,
    Principal,
    ServiceClaims,
    TokenError,
    TokenKind,
    UserClaims,
    token_kind,
    verify_service_token,
    verify_user_token,
)
from duet.services.rpc.access_policy import POLICY, Access

__all__ = ["AuthInterceptor", "Refusal", "current_principal", "current_who"]

logger = logging.getLogger("duet.rpc.auth")

_PRINCIPAL: ContextVar[Principal | None] = ContextVar("duet_principal", default=None)

_MINT_HINT = {
    TokenKind.USER: "a development token: duet token mint --user ID",
    TokenKind.SERVICE: "a development token: duet token mint --role ROLE",
}


def current_principal() -> Principal | None:
    """The caller the running RPC's token proved (None outside an authenticated call)."""
    return _PRINCIPAL.get()


def current_who() -> str:
    """The running RPC's caller as one name, e.g. for an audit record: ``ops-admin:alice``, ``user:ana``."""
    principal = _PRINCIPAL.get()
    return principal.name if principal is not None else "anonymous"


class Refusal(Exception):
    """Why a call is refused, with its status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


# Tokens verified lately, remembered until they expire: a service presents the same token on
# every call, and verifying it (~100-250 us here) would sit on the connect path (Bridge).
VERIFIED_CACHE_SIZE = 1024


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc has no type information
    """Authenticates every call to the server it is installed on (``start_server(..., interceptors=)``)."""

    def __init__(
        self,
        secrets: AuthSecrets,
        policy: Mapping[str, Access] = POLICY,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = secrets
        self.policy = policy
        self._clock = clock
        # Only tokens that verified get in, so a caller without one cannot fill it.
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        try:
            access = self.policy.get(method)
            if access is None:
                raise Refusal(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{method} has no access policy on this server, so nobody may call it",
                )
            principal = self.authenticate(method, access, _token(handler_call_details.invocation_metadata))
        except Refusal as refusal:
            logger.info("refused %s: %s: %s", method, refusal.code.name, refusal.details)
            return _refusing(handler, refusal)
        if handler is None:
            return None  # not served here: gRPC answers UNIMPLEMENTED
        return _with_principal(handler, principal, access, method)

    def authenticate(self, method: str, access: Access, token: str) -> Principal:
        """The caller ``token`` proves, if it may call ``method``; else a ``Refusal``."""
        short = method.rsplit("/", 1)[-1]
        if not token:
            hint = _MINT_HINT[TokenKind.USER if access.users else TokenKind.SERVICE]
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                f"no token: {short} needs {access.describe()} in 'authorization: Bearer <token>' metadata ({hint})",
            )
        try:
            remembered = self._verified.get(token)
            if remembered is not None:
                kind = TokenKind.USER if isinstance(remembered, UserClaims) else TokenKind.SERVICE
            else:
                kind = token_kind(token)
            if kind not in access.kinds:
                raise Refusal(
                    grpc.StatusCode.PERMISSION_DENIED, f"{short} needs {access.describe()}; this is a {kind} token"
                )
            principal = self._verify(kind, token)
        except TokenError as exc:
            raise Refusal(grpc.StatusCode.UNAUTHENTICATED, f"{short} refused the token: {exc}") from None
        if isinstance(principal, ServiceClaims) and principal.role not in access.roles:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{short} needs {access.describe()}; this token is for {principal.name} (role {principal.role})",
            )
        return principal

    def _verify(self, kind: TokenKind, token: str) -> Principal:
        principal = self._verified.get(token)
        if principal is not None:
            if principal.expires_at + LEEWAY_S <= self._clock():
                del self._verified[token]
                raise ExpiredToken(principal.expires_at)
            self._verified.move_to_end(token)
            return principal
        if kind is TokenKind.USER:
            principal = verify_user_token(self._secret(kind), token)
        else:
            principal = verify_service_token(self._secret(kind), token)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _secret(self, kind: TokenKind) -> bytes:
        secret = self.secrets.user if kind is TokenKind.USER else self.secrets.service
        if secret is None:
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                f"this server holds no {kind}-token secret, so it cannot verify {kind} tokens",
            )
        return secret


def _token(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION:
            return parse_bearer(value if isinstance(value, str) else value.decode(errors="replace"))
    return ""


def _check_edge(principal: Principal, access: Access, request: Any, method: str) -> None:
    """An edge token acts only as its own edge: the request's edge id must be the token's."""
    if access.edge_id_field is None or not isinstance(principal, ServiceClaims) or principal.edge_id is None:
        return
    named = getattr(request, access.edge_id_field, "")
    if named != principal.edge_id:
        raise Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{method.rsplit('/', 1)[-1]}: this token is for edge {principal.edge_id}, not {named or '(none)'}",
        )


def _with_principal(
    handler: grpc.RpcMethodHandler, principal: Principal, access: Access, method: str
) -> grpc.RpcMethodHandler:
    """``handler`` with the caller set for its body (a handler may start tasks: they inherit it)."""

    async def check(request: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            _check_edge(principal, access, request, method)
        except Refusal as refusal:
            logger.info("refused %s: %s: %s", method, refusal.code.name, refusal.details)
            await context.abort(refusal.code, refusal.details)

    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(request, context)
            _PRINCIPAL.set(principal)
            return await inner_uu(request, context)

        return handler._replace(unary_unary=unary_unary)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(request, context)
            _PRINCIPAL.set(principal)
            async for item in _responses(inner_us(request, context)):
                yield item

        return handler._replace(unary_stream=unary_stream)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            _PRINCIPAL.set(principal)
            return await inner_su(requests, context)

        return handler._replace(stream_unary=stream_unary)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        _PRINCIPAL.set(principal)
        async for item in _responses(inner_ss(requests, context)):
            yield item

    return handler._replace(stream_stream=stream_stream)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """A streaming handler's responses, whether it is an async generator or writes with context.write."""
    if inspect.isasyncgen(result):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result


def _refusing(handler: grpc.RpcMethodHandler | None, refusal: Refusal) -> grpc.RpcMethodHandler:
    """A handler of the same shape that ends the call with ``refusal`` before reading anything."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(refusal.code, refusal.details)

    streaming_in = handler.request_streaming if handler is not None else False
    streaming_out = handler.response_streaming if handler is not None else False
    if streaming_in and streaming_out:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if streaming_in:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if streaming_out:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
