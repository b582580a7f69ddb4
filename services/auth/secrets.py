"""Where the token-signing secrets and a service's own token come from.

Secrets: a JSON file ``{"user_token_secret": HEX, "service_token_secret": HEX}``
(mode 0600; a process needs only the secrets it verifies or mints with), named
by ``$DUET_AUTH_SECRETS`` or a command-line option, or the two values straight
from ``$DUET_USER_TOKEN_SECRET`` / ``$DUET_SERVICE_TOKEN_SECRET`` (hex). The
local cluster makes the file under its state dir on first start and keeps it,
so tokens minted from it stay valid across restarts.

A service's own token (edges, the matchmaker): ``$DUET_SERVICE_TOKEN``, or a
file named on the command line.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from duet.services.auth.tokens import MIN_SECRET_BYTES

__all__ = [
    "SECRETS_ENV",
    "SECRETS_FILE_NAME",
    "SERVICE_SECRET_ENV",
    "SERVICE_TOKEN_ENV",
    "USER_SECRET_ENV",
    "AuthSecrets",
    "SecretsError",
    "ensure_secrets_file",
    "find_secrets",
    "load_secrets_file",
    "load_service_token",
]

SECRETS_ENV = "DUET_AUTH_SECRETS"
USER_SECRET_ENV = "DUET_USER_TOKEN_SECRET"
SERVICE_SECRET_ENV = "DUET_SERVICE_TOKEN_SECRET"
SERVICE_TOKEN_ENV = "DUET_SERVICE_TOKEN"
# The local cluster's file, in its state dir (.duet/ by default).
SECRETS_FILE_NAME = "auth-secrets.json"

_USER_KEY = "user_token_secret"
_SERVICE_KEY = "service_token_secret"


class SecretsError(Exception):
    """Secrets or a token that cannot be loaded; the message says what to do."""


@dataclass(frozen=True, repr=False)
class AuthSecrets:
    """The signing secrets a process holds (either may be absent) and where they came from."""

    user: bytes | None
    service: bytes | None
    source: str

    def __repr__(self) -> str:  # never print a secret
        return f"AuthSecrets(source={self.source!r}, user={self.user is not None}, service={self.service is not None})"

    def require_user(self, why: str) -> bytes:
        if self.user is None:
            raise SecretsError(f"{self.source} has no {_USER_KEY}: {why}")
        return self.user

    def require_service(self, why: str) -> bytes:
        if self.service is None:
            raise SecretsError(f"{self.source} has no {_SERVICE_KEY}: {why}")
        return self.service


def ensure_secrets_file(path: Path) -> AuthSecrets:
    """The secrets in ``path``, made first (random, mode 0600) if it does not exist."""
    if not path.exists():
        body = json.dumps({_USER_KEY: secrets.token_hex(32), _SERVICE_KEY: secrets.token_hex(32)}, indent=2)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two clusters starting at once must not overwrite each other's file.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SecretsError(f"cannot create the secrets file {path}: {exc.strerror or exc}") from exc
        else:
            with os.fdopen(fd, "w") as f:
                f.write(body + "\n")
    return load_secrets_file(path)


def load_secrets_file(path: Path) -> AuthSecrets:
    """The secrets in ``path``; refuses a file other users may read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as exc:
        raise SecretsError(f"cannot read the secrets file {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise SecretsError(
            f"the secrets file {path} may be read by other users (mode {mode:04o}): run chmod 600 {path}"
        )
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise SecretsError(
            f"the secrets file {path} is not valid ({exc}); expected "
            f'{{"{_USER_KEY}": "<hex>", "{_SERVICE_KEY}": "<hex>"}}'
        ) from None
    where = f"the secrets file {path}"
    return AuthSecrets(
        user=_secret(data.get(_USER_KEY), f"{_USER_KEY} in {path}"),
        service=_secret(data.get(_SERVICE_KEY), f"{_SERVICE_KEY} in {path}"),
        source=where,
    )


def find_secrets(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None, default: Path | None = None
) -> AuthSecrets | None:
    """The secrets this process is given: ``path``, else ``$DUET_AUTH_SECRETS``, else the
    ``$DUET_*_TOKEN_SECRET`` values, else ``default`` when that file exists; None if none."""
    env = os.environ if environ is None else environ
    if path is not None:
        return load_secrets_file(path)
    if env.get(SECRETS_ENV):
        return load_secrets_file(Path(env[SECRETS_ENV]))
    if env.get(USER_SECRET_ENV) or env.get(SERVICE_SECRET_ENV):
        return AuthSecrets(
            user=_secret(env.get(USER_SECRET_ENV) or None, f"${USER_SECRET_ENV}"),
            service=_secret(env.get(SERVICE_SECRET_ENV) or None, f"${SERVICE_SECRET_ENV}"),
            source="the environment",
        )
    if default is not None and default.exists():
        return load_secrets_file(default)
    return None


def load_service_token(token_file: Path | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """This service's own token: from ``token_file``, else ``$DUET_SERVICE_TOKEN``; None if neither."""
    env = os.environ if environ is None else environ
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise SecretsError(f"cannot read the token file {token_file}: {exc.strerror or exc}") from exc
        if not token:
            raise SecretsError(f"the token file {token_file} is empty")
        return token
    return env.get(SERVICE_TOKEN_ENV, "").strip() or None


def _secret(value: object, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        raise SecretsError(f"{what} is not hex") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise SecretsError(f"{what} is {len(raw)} bytes; a signing secret needs at least {MIN_SECRET_BYTES}")
    return raw
