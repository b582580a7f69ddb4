"""Test plumbing: a channel whose calls present service tokens, as the real callers do.

RegisterEdge and WatchRoutes carry an edge token for the edge the request
names (what that edge's process presents); every other call an ops-admin
token for ``subject``. A call that brings its own ``authorization`` keeps it.
The server verifies every one of them as usual.
"""

from __future__ import annotations

from typing import Any

import grpc

from duet.services.auth.bearer import AUTHORIZATION, bearer_metadata
from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import Role, mint_service_token

# The name the audit log shows for calls made through such a channel.
ADMIN_SUBJECT = "admin-test"
_EDGE_METHODS = ("/duet.v1.Routing/RegisterEdge", "/duet.v1.Routing/WatchRoutes", "/duet.v1.Routing/Heartbeat")


class _Tokens:
    def __init__(self, secrets: AuthSecrets, subject: str = ADMIN_SUBJECT) -> None:
        assert secrets.service is not None
        self.secret = secrets.service
        self.subject = subject

    def _details(self, details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if AUTHORIZATION in metadata:
            return details
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method in _EDGE_METHODS:
            token = mint_service_token(self.secret, Role.EDGE, request.edge_id or "fra-1")
        else:
            token = mint_service_token(self.secret, Role.OPS_ADMIN, self.subject)
        for key, value in bearer_metadata(token):
            metadata.add(key, value)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under one call kind only: one class per kind.
class _UnaryUnary(_Tokens, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details, request), request)


class _UnaryStream(_Tokens, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details, request), request)


def channel(address: str, secrets: AuthSecrets, subject: str = ADMIN_SUBJECT) -> grpc.aio.Channel:
    """An insecure channel to ``address`` whose calls present tokens signed with ``secrets``."""
    return grpc.aio.insecure_channel(
        address, interceptors=[_UnaryUnary(secrets, subject), _UnaryStream(secrets, subject)]
    )
