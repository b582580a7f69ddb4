"""The ops token a command presents: given, from the environment, or minted from local secrets.

`duet topology` and `duet calls` talk to services that refuse callers without
an ops token. A person at a local cluster should not need to mint one by hand,
so a command without ``--token`` or ``$DUET_OPS_TOKEN`` mints a short-lived one
for the OS user from the secrets `duet up` keeps in ./.duet.
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path

from duet.services.auth.secrets import SECRETS_FILE_NAME, SecretsError, find_secrets
from duet.services.auth.tokens import Role, mint_service_token

OPS_TOKEN_ENV = "DUET_OPS_TOKEN"
STATE_DIR = Path(".duet")
MINTED_TTL_S = 300.0


class NoOpsToken(Exception):
    """No token given and none can be minted here; the message says what to do."""


def os_user_name() -> str:
    """This person's name for a minted token (and so the audit log): the OS user name, as a token subject."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        name = f"uid-{os.getuid()}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64] or f"uid-{os.getuid()}"


def ops_token(role: Role, given: str | None) -> str:
    """``--token``, else ``$DUET_OPS_TOKEN``, else a ``role`` token minted from the local cluster's secrets."""
    token = given or os.environ.get(OPS_TOKEN_ENV, "").strip()
    if token:
        return token
    try:
        found = find_secrets(default=STATE_DIR / SECRETS_FILE_NAME)
    except SecretsError as exc:
        raise NoOpsToken(str(exc)) from None
    if found is None or found.service is None:
        raise NoOpsToken(
            f"no ops token: give --token TOKEN or set ${OPS_TOKEN_ENV} (mint one where the secrets are: "
            f"duet token mint --role {role} --name YOU), or run where `duet up` keeps {STATE_DIR / SECRETS_FILE_NAME}"
        )
    return mint_service_token(found.service, role, os_user_name(), ttl_s=MINTED_TTL_S)
