"""Who is calling an admin RPC, for the audit log."""

from __future__ import annotations

import grpc

ACTOR_METADATA = "x-duet-actor"
MAX_ACTOR_LENGTH = 128


def actor_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's name as it declares it ("x-duet-actor" metadata), or "unknown".

    Unverified: any caller can claim any name. Authentication replaces this
    with the principal of the caller's verified credential.
    """
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and isinstance(value, str):
            name = value.strip()
            if name and name.isprintable() and len(name) <= MAX_ACTOR_LENGTH:
                return name
    return "unknown"
