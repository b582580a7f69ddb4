"""Whom a forwarded Session is for: the client address a replica passes on, trusted only with proof.

A replica that forwards a client's stream to the shard's owner sends, beside
the user's own bearer token (which the owner verifies itself), the client's
address in ``x-duet-client-ip`` and its own service token (role matchmaker)
in ``x-duet-replica-token``. The owner takes the address only when that token
verifies; otherwise the header is ignored and the TCP peer's address is used,
so a client cannot place itself anywhere by sending the header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from duet.services.auth.tokens import Role, TokenError, verify_service_token

CLIENT_IP_KEY = "x-duet-client-ip"
REPLICA_TOKEN_KEY = "x-duet-replica-token"


def forwarding_metadata(client_ip: str, replica_token: str) -> tuple[tuple[str, str], ...]:
    """What a forwarding replica adds to the user's own metadata."""
    return ((CLIENT_IP_KEY, client_ip), (REPLICA_TOKEN_KEY, replica_token))


def forwarded_client_ip(metadata: Iterable[tuple[str, Any]] | None, service_secret: bytes | None) -> str | None:
    """The client address a replica forwarded, if the call carries a valid matchmaker service token; else None."""
    values = {k: (v if isinstance(v, str) else bytes(v).decode(errors="replace")) for k, v in metadata or ()}
    ip, token = values.get(CLIENT_IP_KEY, "").strip(), values.get(REPLICA_TOKEN_KEY, "").strip()
    if not ip or not token or service_secret is None:
        return None
    try:
        claims = verify_service_token(service_secret, token)
    except TokenError:
        return None
    if claims.role is not Role.MATCHMAKER:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None
