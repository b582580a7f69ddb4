"""User and service tokens: what verifies, what does not, and what the refusal says."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from duet.services.auth.tokens import (
    LEEWAY_S,
    BadSignature,
    ExpiredToken,
    MalformedToken,
    MissingToken,
    NotYetValid,
    Role,
    ServiceClaims,
    TokenKind,
    UserClaims,
    WrongKind,
    mint_service_token,
    mint_user_token,
    token_kind,
    unverified_user_id,
    verify_service_token,
    verify_user_token,
)

USER_SECRET = b"u" * 32
SERVICE_SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", min_size=1, max_size=64)


def test_a_user_token_round_trips() -> None:
    now = time.time()
    token = mint_user_token(USER_SECRET, "ana", ttl_s=600, now=now)
    claims = verify_user_token(USER_SECRET, token)
    assert claims == UserClaims(user_id="ana", issued_at=int(now), expires_at=int(now) + 600)
    assert claims.name == "user:ana"
    assert token_kind(token) is TokenKind.USER and unverified_user_id(token) == "ana"


def test_a_service_token_round_trips_with_its_role_and_edge() -> None:
    edge = verify_service_token(SERVICE_SECRET, mint_service_token(SERVICE_SECRET, Role.EDGE, "fra-1"))
    assert (edge.role, edge.edge_id, edge.name) == (Role.EDGE, "fra-1", "edge:fra-1")
    mm = verify_service_token(SERVICE_SECRET, mint_service_token(SERVICE_SECRET, Role.MATCHMAKER))
    assert (mm.role, mm.edge_id, mm.name) == (Role.MATCHMAKER, None, "matchmaker")
    ops = verify_service_token(SERVICE_SECRET, mint_service_token(SERVICE_SECRET, Role.OPS_ADMIN, "alice"))
    assert (ops.edge_id, ops.name) == (None, "ops-admin:alice")


def test_an_expired_token_says_when_and_what_to_do() -> None:
    issued = time.time() - 7200
    token = mint_user_token(USER_SECRET, "ana", ttl_s=3600, now=issued)
    with pytest.raises(ExpiredToken) as info:
        verify_user_token(USER_SECRET, token)
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(issued) + 3600))
    assert str(info.value) == f"token expired at {expected}: mint a new one"


def test_clock_skew_within_the_leeway_is_tolerated_and_beyond_it_is_not() -> None:
    now = time.time()
    just_expired = mint_user_token(USER_SECRET, "ana", ttl_s=60, now=now - 60 - LEEWAY_S / 2)
    assert verify_user_token(USER_SECRET, just_expired).user_id == "ana"
    long_expired = mint_user_token(USER_SECRET, "ana", ttl_s=60, now=now - 60 - LEEWAY_S * 3)
    with pytest.raises(ExpiredToken):
        verify_user_token(USER_SECRET, long_expired)
    slightly_ahead = mint_user_token(USER_SECRET, "ana", now=now + LEEWAY_S / 2)
    assert verify_user_token(USER_SECRET, slightly_ahead).user_id == "ana"
    far_ahead = mint_user_token(USER_SECRET, "ana", now=now + LEEWAY_S * 6)
    with pytest.raises(NotYetValid, match="clocks"):
        verify_user_token(USER_SECRET, far_ahead)


def _reforge(token: str, **changes: object) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def test_an_altered_token_or_one_from_another_secret_is_refused() -> None:
    token = mint_user_token(USER_SECRET, "ana")
    with pytest.raises(BadSignature, match="another secret"):
        verify_user_token(USER_SECRET, _reforge(token, sub="ben"))
    with pytest.raises(BadSignature):
        verify_user_token(USER_SECRET, mint_user_token(OTHER_SECRET, "ana"))
    with pytest.raises(BadSignature):
        verify_service_token(SERVICE_SECRET, mint_service_token(OTHER_SECRET, Role.OPS_ADMIN))
    # Raising one's own role keeps the old signature: refused.
    edge = mint_service_token(SERVICE_SECRET, Role.EDGE, "fra-1")
    with pytest.raises(BadSignature):
        verify_service_token(SERVICE_SECRET, _reforge(edge, role="ops-admin"))


def test_a_user_token_never_passes_as_a_service_token() -> None:
    user = mint_user_token(USER_SECRET, "ana")
    with pytest.raises(WrongKind, match="this is a user token; a service token is needed"):
        verify_service_token(SERVICE_SECRET, user)
    # Relabelled as a service token (audience and role changed): the service secret does not match.
    relabelled = _reforge(user, aud="duet-service", role="ops-admin")
    with pytest.raises(BadSignature):
        verify_service_token(SERVICE_SECRET, relabelled)
    # Even one signed with the user secret but claiming to be a service token proves nothing to a service.
    crafted = jwt.encode(
        {
            "sub": "ana",
            "role": "ops-admin",
            "aud": "duet-service",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        USER_SECRET,
        algorithm="HS256",
    )
    with pytest.raises(BadSignature):
        verify_service_token(SERVICE_SECRET, crafted)
    with pytest.raises(WrongKind):
        verify_user_token(USER_SECRET, mint_service_token(SERVICE_SECRET, Role.MATCHMAKER))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub"])
def test_a_token_missing_a_claim_is_malformed(missing: str) -> None:
    now = int(time.time())
    claims = {"sub": "ana", "aud": "duet-user", "iat": now, "exp": now + 60}
    del claims[missing]
    token = jwt.encode(claims, USER_SECRET, algorithm="HS256")
    with pytest.raises(MalformedToken, match=missing):
        verify_user_token(USER_SECRET, token)


def test_garbage_unknown_roles_and_unsigned_tokens_are_malformed() -> None:
    with pytest.raises(MissingToken):
        verify_user_token(USER_SECRET, "")
    with pytest.raises(MalformedToken, match="not a token"):
        verify_user_token(USER_SECRET, "hello")
    with pytest.raises(MalformedToken, match="audience"):
        verify_user_token(USER_SECRET, jwt.encode({"sub": "ana"}, USER_SECRET, algorithm="HS256"))
    now = int(time.time())
    unknown_role = jwt.encode(
        {"sub": "x", "role": "root", "aud": "duet-service", "iat": now, "exp": now + 60}, SERVICE_SECRET, "HS256"
    )
    with pytest.raises(MalformedToken, match="no known role"):
        verify_service_token(SERVICE_SECRET, unknown_role)
    unsigned = jwt.encode({"sub": "ana", "aud": "duet-user", "iat": now, "exp": now + 60}, None, algorithm="none")
    with pytest.raises(MalformedToken, match="HS256"):
        verify_user_token(USER_SECRET, unsigned)
    bad_sub = jwt.encode({"sub": "a b", "aud": "duet-user", "iat": now, "exp": now + 60}, USER_SECRET, "HS256")
    with pytest.raises(MalformedToken, match="user id"):
        verify_user_token(USER_SECRET, bad_sub)


def test_minting_refuses_what_could_never_verify() -> None:
    with pytest.raises(ValueError, match="user id"):
        mint_user_token(USER_SECRET, "not valid!")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint_user_token(b"short", "ana")
    with pytest.raises(ValueError, match="edge id"):
        mint_service_token(SERVICE_SECRET, Role.EDGE)
    with pytest.raises(ValueError, match="positive"):
        mint_user_token(USER_SECRET, "ana", ttl_s=0)


@given(user=names, ttl=st.integers(min_value=10, max_value=10**8))
def test_any_user_claims_round_trip(user: str, ttl: int) -> None:
    now = time.time()
    claims = verify_user_token(USER_SECRET, mint_user_token(USER_SECRET, user, ttl_s=ttl, now=now))
    assert claims == UserClaims(user_id=user, issued_at=int(now), expires_at=int(now) + ttl)


@given(role=st.sampled_from(list(Role)), subject=names, ttl=st.integers(min_value=10, max_value=10**8))
def test_any_service_claims_round_trip(role: Role, subject: str, ttl: int) -> None:
    now = time.time()
    token = mint_service_token(SERVICE_SECRET, role, subject, ttl_s=ttl, now=now)
    claims = verify_service_token(SERVICE_SECRET, token)
    assert claims == ServiceClaims(role=role, subject=subject, issued_at=int(now), expires_at=int(now) + ttl)
    assert claims.edge_id == (subject if role is Role.EDGE else None)
    with pytest.raises(WrongKind):
        verify_user_token(USER_SECRET, token)
