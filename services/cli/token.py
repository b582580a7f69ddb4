"""``duet token mint``: print a development token signed with the local secrets."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from duet.services.auth.secrets import SECRETS_ENV, SECRETS_FILE_NAME, AuthSecrets, find_secrets
from duet.services.auth.tokens import Role, mint_service_token, mint_user_token

HELP = """\
Print a token signed with this deployment's secrets (by default the local
cluster's, .duet/auth-secrets.json, which `duet up` makes on first start).

  duet token mint --user ana                       a user token (a client's Session, GetCall of ana's calls)
  duet token mint --role ops-read --name alice     read-only ops (GetTopology, GetStats, GetCall)
  duet token mint --role ops-admin --name alice    ops: everything ops-read may, plus changes
  duet token mint --role edge --edge-id fra-1      what edge fra-1 presents to the routing service
  duet token mint --role matchmaker                what the matchmaker presents to routing and edges

Present it as gRPC metadata 'authorization: Bearer <token>' (docs/client-guide.md).
"""

DEFAULT_SECRETS = Path(".duet") / SECRETS_FILE_NAME
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def ttl_seconds(value: str) -> float:
    """'90', '90s', '15m', '12h', '30d' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"'{value}' is not a lifetime: give e.g. 3600, 90s, 15m, 12h or 30d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", metavar="mint", required=True)
    mint = sub.add_parser("mint", help="print a user or service token", description=HELP)
    mint.formatter_class = argparse.RawDescriptionHelpFormatter
    who = mint.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID", help="a user token for this user id")
    who.add_argument("--role", choices=[r.value for r in Role], help="a service token with this role")
    mint.add_argument("--edge-id", help="with --role edge: the edge the token is bound to")
    mint.add_argument("--name", help="with --role ops-read/ops-admin: who holds it (shown in audit records)")
    mint.add_argument(
        "--ttl",
        type=ttl_seconds,
        default=None,
        help="lifetime, e.g. 15m, 12h, 30d (default: 1h for user tokens, 30d for service tokens)",
    )
    mint.add_argument(
        "--auth-secrets",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"secrets file (default: ${SECRETS_ENV}, else {DEFAULT_SECRETS})",
    )


def _secrets(args: argparse.Namespace) -> AuthSecrets:
    secrets = find_secrets(args.auth_secrets, default=DEFAULT_SECRETS)
    if secrets is None:
        raise SystemExit(
            f"duet token: no secrets to sign with: {DEFAULT_SECRETS} does not exist here (start `duet up` once, "
            f"from this folder, to make it) and neither --auth-secrets nor ${SECRETS_ENV} names another"
        )
    return secrets


def run(args: argparse.Namespace) -> int:
    secrets = _secrets(args)
    ttl = {} if args.ttl is None else {"ttl_s": args.ttl}
    try:
        if args.user is not None:
            if args.edge_id or args.name:
                raise SystemExit("duet token: --edge-id and --name go with --role, not --user")
            token = mint_user_token(secrets.require_user("minting a user token"), args.user, **ttl)
        else:
            role = Role(args.role)
            if role is Role.EDGE and not args.edge_id:
                raise SystemExit("duet token: an edge token is bound to one edge: give --edge-id, e.g. fra-1")
            if role is not Role.EDGE and args.edge_id:
                raise SystemExit("duet token: --edge-id goes with --role edge only")
            subject = args.edge_id if role is Role.EDGE else args.name
            token = mint_service_token(secrets.require_service("minting a service token"), role, subject, **ttl)
    except ValueError as exc:
        raise SystemExit(f"duet token: {exc}") from None
    print(token)
    return 0
