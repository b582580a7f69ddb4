"""How a token travels: ``authorization: Bearer <token>`` (gRPC metadata and HTTP alike)."""

from __future__ import annotations

__all__ = ["AUTHORIZATION", "bearer_metadata", "parse_bearer"]

# gRPC metadata keys are lower case.
AUTHORIZATION = "authorization"
_SCHEME = "bearer"


def bearer_metadata(token: str) -> tuple[tuple[str, str]]:
    """gRPC metadata presenting ``token``."""
    return ((AUTHORIZATION, f"Bearer {token}"),)


def parse_bearer(value: str) -> str:
    """The token in an ``authorization`` value; "" when it is not ``Bearer <token>``."""
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == _SCHEME else ""
