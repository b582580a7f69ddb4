"""``duet web``: the web client and its gateway in front of a running matchmaker."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from duet.services.auth.secrets import SECRETS_ENV, SECRETS_FILE_NAME, find_secrets
from duet.services.cli.log_setup import configure_logging
from duet.services.client.reconnect import matchmaker_addresses
from duet.services.rpc.server import install_stop_signals
from duet.services.web.app import WebServer
from duet.services.web.demo_regions import DemoRegions, UnknownRegion

HELP = """\
Serve the browser client and carry its Session protocol to the matchmaker.

Open the printed URL in a browser, allow the camera and microphone and press
"Talk to someone". The page talks to this gateway over a WebSocket at
/session: one WebSocket is one Matchmaker.Session gRPC stream, each text frame
one ClientMessage or ServerMessage in protobuf's JSON mapping. The browser's
address goes to the matchmaker as x-forwarded-for (honoured by a matchmaker
started with --trust-forwarded-for). `duet up` starts this gateway for you.

Browsers allow the camera only on https or on localhost/127.0.0.1, so serve
it on loopback or behind a TLS proxy.

The matchmaker wants a user token on every Session. With --guest-sign-in
(development only) the gateway signs each visitor in as a fresh guest,
minting short-lived tokens with the user-token secret (--auth-secrets, else
$DUET_AUTH_SECRETS, else .duet/auth-secrets.json); a production deployment
leaves it off and gives the page its token from its own login.
"""

DEFAULT_SECRETS = Path(".duet") / SECRETS_FILE_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--matchmaker",
        default="127.0.0.1:50052",
        help="matchmaker address, or every replica's separated by commas: a session that finds one "
        "unavailable is opened on the next (default: %(default)s)",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on, port 0 = any free (default: %(default)s)"
    )
    parser.add_argument(
        "--demo-regions",
        default="",
        metavar="REGIONS",
        help=(
            "comma-separated regions (e.g. Frankfurt,Virginia,Singapore) the page may ask for: the gateway then "
            "forwards that region's synthetic demo address, placing the browser on that region's edge. Only for a "
            "local cluster (demo GeoIP database, matchmaker trusting x-forwarded-for); default: none"
        ),
    )
    parser.add_argument(
        "--guest-sign-in",
        action="store_true",
        help="development only: sign every visitor in as a fresh guest (POST /token mints its user token)",
    )
    parser.add_argument(
        "--auth-secrets",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"with --guest-sign-in: the secrets file (default: ${SECRETS_ENV}, else {DEFAULT_SECRETS})",
    )
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        regions = DemoRegions(r.strip() for r in args.demo_regions.split(",") if r.strip())
    except UnknownRegion as exc:
        raise SystemExit(f"duet web: {exc}") from None

    try:
        matchmakers = matchmaker_addresses(args.matchmaker)
    except ValueError as exc:
        raise SystemExit(f"duet web: --matchmaker: {exc}") from None

    guest_secret = None
    if args.guest_sign_in:
        found = find_secrets(args.auth_secrets, default=DEFAULT_SECRETS)
        if found is None:
            raise SystemExit(
                f"duet web: --guest-sign-in needs the user-token secret: give --auth-secrets FILE or set "
                f"${SECRETS_ENV} (`duet up` makes {DEFAULT_SECRETS})"
            )
        guest_secret = found.require_user("--guest-sign-in mints the guests' tokens with it")

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        async with WebServer(
            matchmakers, listen=args.listen, demo_regions=regions, guest_token_secret=guest_secret
        ) as url:
            print(f"web client {url}   (matchmaker {', '.join(matchmakers)}; Ctrl-C to stop)", flush=True)
            await stop.wait()
            print("shutting down ...", flush=True)

    asyncio.run(main())
    return 0
