"""Signed, expiring tokens: who a caller is, for users and for services.

A token is a JWT signed with HMAC-SHA256 (the model of app-server tokens: the
app's own server holds the secret and mints tokens for its users). Two kinds,
each with its own secret and audience, so a user token can never pass as a
service token even if someone relabels it:

    user     sub = the user id; aud "duet-user"; signed with the user-token secret
    service  sub = who (an edge id, "matchmaker", an operator's name), role = what it
             may do; aud "duet-service"; signed with the service-token secret

Both carry iat and exp (whole seconds since the epoch). Verification allows a
few seconds of clock skew. No gRPC here: the servers' interceptor
(``duet.services.rpc.auth``) turns these errors into statuses.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import jwt

__all__ = [
    "DEFAULT_SERVICE_TTL_S",
    "DEFAULT_USER_TTL_S",
    "LEEWAY_S",
    "BadSignature",
    "ExpiredToken",
    "MalformedToken",
    "MissingToken",
    "NotYetValid",
    "Principal",
    "Role",
    "ServiceClaims",
    "TokenError",
    "TokenKind",
    "UserClaims",
    "WrongKind",
    "mint_service_token",
    "mint_user_token",
    "token_kind",
    "unverified_user_id",
    "verify_service_token",
    "verify_user_token",
]

ALGORITHM = "HS256"
# Clock skew tolerated between the minting and the verifying machine.
LEEWAY_S = 5.0
DEFAULT_USER_TTL_S = 3600.0
# Services run for days and rotation is not built: their tokens live long (see docs/architecture.md).
DEFAULT_SERVICE_TTL_S = 30 * 24 * 3600.0
# HS256 keys shorter than the hash output weaken it (RFC 7518 section 3.2).
MIN_SECRET_BYTES = 32

# The matchmaker's rule for user ids; edge ids and operator names follow the same shape.
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # \Z: no trailing newline, as $ would allow


class TokenKind(StrEnum):
    USER = "user"
    SERVICE = "service"


_AUDIENCE = {TokenKind.USER: "duet-user", TokenKind.SERVICE: "duet-service"}
_KIND_OF_AUDIENCE = {aud: kind for kind, aud in _AUDIENCE.items()}


class Role(StrEnum):
    """What a service token may do (docs/architecture.md, "Authentication")."""

    EDGE = "edge"  # register and watch routes as its own edge id
    MATCHMAKER = "matchmaker"  # drive edges, pick ingress and routes, read any call
    OPS_READ = "ops-read"  # read-only admin
    OPS_ADMIN = "ops-admin"  # everything ops-read may, plus changes


# -- errors: each says what is wrong and what to do ---------------------------------


class TokenError(Exception):
    """A token that does not prove who the caller is."""


class MissingToken(TokenError):
    """No token was presented."""


class MalformedToken(TokenError):
    """Not a Duet token at all, or one that lacks a claim it needs."""


class BadSignature(TokenError):
    """The signature does not match: minted with another secret, or altered."""


class ExpiredToken(TokenError):
    """Past its expiry (beyond the clock-skew leeway)."""

    def __init__(self, expired_at: float) -> None:
        self.expired_at = expired_at
        super().__init__(f"token expired at {_iso(expired_at)}: mint a new one")


class NotYetValid(TokenError):
    """Issued in the future: the minting machine's clock is ahead."""


class WrongKind(TokenError):
    """A user token where a service token is needed, or the other way round."""

    def __init__(self, got: TokenKind, wanted: TokenKind) -> None:
        self.got, self.wanted = got, wanted
        super().__init__(f"this is a {got} token; a {wanted} token is needed here")


# -- claims ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserClaims:
    """A verified user token."""

    user_id: str
    issued_at: int
    expires_at: int

    @property
    def name(self) -> str:
        """Who, for logs and audit records."""
        return f"user:{self.user_id}"


@dataclass(frozen=True)
class ServiceClaims:
    """A verified service token: ``subject`` is an edge id (role edge), or who else holds it."""

    role: Role
    subject: str
    issued_at: int
    expires_at: int

    @property
    def edge_id(self) -> str | None:
        """The edge this token is bound to (role edge only)."""
        return self.subject if self.role is Role.EDGE else None

    @property
    def name(self) -> str:
        """Who, for logs and audit records: e.g. ``edge:fra-1``, ``ops-admin:alice``, ``matchmaker``."""
        return self.role.value if self.subject == self.role.value else f"{self.role}:{self.subject}"


Principal = UserClaims | ServiceClaims


# -- minting ---------------------------------------------------------------------------


def mint_user_token(secret: bytes, user_id: str, *, ttl_s: float = DEFAULT_USER_TTL_S, now: float | None = None) -> str:
    """A token for ``user_id`` valid for ``ttl_s`` seconds from ``now`` (default: the clock)."""
    _check_name("user id", user_id)
    return _mint(secret, TokenKind.USER, {"sub": user_id}, ttl_s, now)


def mint_service_token(
    secret: bytes,
    role: Role,
    subject: str | None = None,
    *,
    ttl_s: float = DEFAULT_SERVICE_TTL_S,
    now: float | None = None,
) -> str:
    """A service token with ``role``. Role edge needs ``subject`` = the edge id it is bound to;
    other roles name their holder there (default: the role's name)."""
    role = Role(role)
    if role is Role.EDGE and not subject:
        raise ValueError("an edge token is bound to one edge: give its edge id")
    subject = subject or role.value
    _check_name("edge id" if role is Role.EDGE else "subject", subject)
    return _mint(secret, TokenKind.SERVICE, {"sub": subject, "role": role.value}, ttl_s, now)


def _mint(secret: bytes, kind: TokenKind, claims: dict[str, Any], ttl_s: float, now: float | None) -> str:
    _check_secret(secret)
    if not ttl_s > 0:
        raise ValueError(f"a token's lifetime must be positive, got {ttl_s} s")
    issued = int(time.time() if now is None else now)
    payload = {**claims, "aud": _AUDIENCE[kind], "iat": issued, "exp": issued + max(1, round(ttl_s))}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


# -- verifying -------------------------------------------------------------------------


def token_kind(token: str) -> TokenKind:
    """Which kind ``token`` says it is, WITHOUT checking its signature: only to pick the
    secret to verify it with, or to refuse a kind a method never accepts."""
    audience = _unverified(token).get("aud")
    kind = _KIND_OF_AUDIENCE.get(audience) if isinstance(audience, str) else None
    if kind is None:
        raise MalformedToken("not a Duet token: it names no Duet audience (aud)")
    return kind


def unverified_user_id(token: str) -> str:
    """The user id a user token names, WITHOUT checking its signature: for a client reading
    its own token (the server verifies it)."""
    if token_kind(token) is not TokenKind.USER:
        raise WrongKind(TokenKind.SERVICE, TokenKind.USER)
    return _name_claim(_unverified(token), "user id")


def verify_user_token(secret: bytes, token: str, *, leeway_s: float = LEEWAY_S) -> UserClaims:
    """The user a token proves, or a ``TokenError`` saying why it proves nothing."""
    claims = _verify(secret, token, TokenKind.USER, leeway_s)
    return UserClaims(user_id=_name_claim(claims, "user id"), issued_at=claims["iat"], expires_at=claims["exp"])


def verify_service_token(secret: bytes, token: str, *, leeway_s: float = LEEWAY_S) -> ServiceClaims:
    """The service a token proves, or a ``TokenError`` saying why it proves nothing."""
    claims = _verify(secret, token, TokenKind.SERVICE, leeway_s)
    try:
        role = Role(str(claims.get("role")))
    except ValueError:
        raise MalformedToken(
            f"service token has no known role (got {claims.get('role')!r}; roles: {', '.join(Role)})"
        ) from None
    return ServiceClaims(
        role=role, subject=_name_claim(claims, "subject"), issued_at=claims["iat"], expires_at=claims["exp"]
    )


def _verify(secret: bytes, token: str, kind: TokenKind, leeway_s: float) -> dict[str, Any]:
    _check_secret(secret)
    if not token:
        raise MissingToken("no token")
    got = token_kind(token)
    if got is not kind:
        raise WrongKind(got, kind)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=_AUDIENCE[kind],
            leeway=leeway_s,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        # Raised only after the signature checked out, so the unverified exp is the real one.
        raise ExpiredToken(float(_unverified(token)["exp"])) from None
    except jwt.InvalidSignatureError:
        raise BadSignature(
            "token signature does not match: it was minted with another secret (another deployment?) or altered"
        ) from None
    except jwt.ImmatureSignatureError:
        raise NotYetValid(
            f"token was issued in the future (more than {leeway_s:g} s ahead of this server's clock): "
            "check the clocks, or mint a new one"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise MalformedToken(f"token lacks the '{exc.claim}' claim") from None
    except jwt.InvalidAlgorithmError:
        raise MalformedToken(f"token is not signed with {ALGORITHM}") from None
    except jwt.PyJWTError as exc:
        raise MalformedToken(f"token is not valid: {exc}") from None
    return claims


def _unverified(token: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise MalformedToken("not a token: expected a JWT (three base64url parts separated by dots)") from None
    if not isinstance(claims, dict):
        raise MalformedToken("not a token: its payload is not a JSON object")
    return claims


def _name_claim(claims: dict[str, Any], what: str) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not NAME_RE.match(sub):
        raise MalformedToken(f"token's {what} (sub) is not 1-64 characters of [A-Za-z0-9_.-]: {sub!r}")
    return sub


def _check_name(what: str, value: str) -> None:
    if not NAME_RE.match(value):
        raise ValueError(f"{what} must be 1-64 characters of [A-Za-z0-9_.-], got {value!r}")


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"a signing secret must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
