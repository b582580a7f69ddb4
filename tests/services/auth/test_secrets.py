"""Where secrets and service tokens come from: the local cluster's file, the environment, refusals in words."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from duet.services.auth.secrets import (
    SECRETS_ENV,
    SERVICE_SECRET_ENV,
    SERVICE_TOKEN_ENV,
    USER_SECRET_ENV,
    SecretsError,
    ensure_secrets_file,
    find_secrets,
    load_secrets_file,
    load_service_token,
)


def test_the_file_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "auth-secrets.json"
    first = ensure_secrets_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.user is not None and first.service is not None and first.user != first.service
    assert len(first.user) == len(first.service) == 32
    again = ensure_secrets_file(path)
    assert (again.user, again.service) == (first.user, first.service)
    assert "user=True" in repr(first) and first.user.hex() not in repr(first)


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth-secrets.json"
    ensure_secrets_file(path)
    path.chmod(0o644)
    with pytest.raises(SecretsError, match=f"mode 0644\\): run chmod 600 {path}"):
        load_secrets_file(path)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", "is not valid"),
        ("[1, 2]", "is not valid"),
        (json.dumps({"user_token_secret": "zz"}), "is not hex"),
        (json.dumps({"user_token_secret": "ab" * 8}), "8 bytes"),
    ],
)
def test_a_bad_file_says_what_is_wrong(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "auth-secrets.json"
    path.write_text(body)
    path.chmod(0o600)
    with pytest.raises(SecretsError, match=words):
        load_secrets_file(path)


def test_a_missing_secret_is_named_when_it_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "edge-secrets.json"
    path.write_text(json.dumps({"service_token_secret": "ab" * 32}))
    path.chmod(0o600)
    secrets = load_secrets_file(path)
    assert secrets.require_service("verifying") == bytes.fromhex("ab" * 32)
    with pytest.raises(SecretsError, match="has no user_token_secret: the matchmaker needs it"):
        secrets.require_user("the matchmaker needs it")


def test_secrets_are_found_in_order_path_env_file_env_values_default(tmp_path: Path) -> None:
    given = tmp_path / "given.json"
    named = tmp_path / "named.json"
    default = tmp_path / "default.json"
    made = {p: ensure_secrets_file(p) for p in (given, named, default)}
    env = {SECRETS_ENV: str(named), USER_SECRET_ENV: "cd" * 32}
    assert find_secrets(given, environ=env, default=default).user == made[given].user  # type: ignore[union-attr]
    assert find_secrets(environ=env, default=default).user == made[named].user  # type: ignore[union-attr]
    values = find_secrets(environ={USER_SECRET_ENV: "cd" * 32, SERVICE_SECRET_ENV: "ef" * 32}, default=default)
    assert values is not None and (values.user, values.service) == (b"\xcd" * 32, b"\xef" * 32)
    assert find_secrets(environ={}, default=default).user == made[default].user  # type: ignore[union-attr]
    assert find_secrets(environ={}, default=tmp_path / "absent.json") is None


def test_a_service_token_comes_from_its_file_or_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc.def.ghi\n")
    assert load_service_token(token_file, environ={SERVICE_TOKEN_ENV: "env"}) == "abc.def.ghi"
    assert load_service_token(environ={SERVICE_TOKEN_ENV: " env "}) == "env"
    assert load_service_token(environ={}) is None
    with pytest.raises(SecretsError, match="cannot read the token file"):
        load_service_token(tmp_path / "absent")
    (tmp_path / "empty").write_text("")
    with pytest.raises(SecretsError, match="is empty"):
        load_service_token(tmp_path / "empty")
