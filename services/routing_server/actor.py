"""Who is calling an admin RPC, for the audit log."""

from __future__ import annotations

import grpc

from duet.services.rpc.auth import current_principal

ACTOR_METADATA = "x-duet-actor"
MAX_ACTOR_LENGTH = 128


def actor_of(context: grpc.aio.ServicerContext) -> str:
    """Who the caller is: the principal its verified token names (e.g. ``ops-admin:alice``).

    Only a server without the auth interceptor (a test) has no principal; then
    the name the caller declares ("x-duet-actor" metadata, unverified), or "unknown".
    """
    principal = current_principal()
    if principal is not None:
        return principal.name
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and isinstance(value, str):
            name = value.strip()
            if name and name.isprintable() and len(name) <= MAX_ACTOR_LENGTH:
                return name
    return "unknown"
