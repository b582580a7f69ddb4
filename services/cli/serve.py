"""``duet routing | matchmaker | edge``: run one service in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from duet.routing.geo_database import default_database_path, installed_default_database
from duet.routing.topology import Topology, TopologyError
from duet.routing.topology_file import load_topology_file, load_world_topology
from duet.services.auth.secrets import (
    SECRETS_ENV,
    SERVICE_SECRET_ENV,
    SERVICE_TOKEN_ENV,
    USER_SECRET_ENV,
    AuthSecrets,
    find_secrets,
    load_service_token,
)
from duet.services.cli.log_setup import configure_logging
from duet.services.devkit.embedded_postgres import database_url
from duet.services.edge_server.server import serve_edge
from duet.services.matchmaker.config import RECENT_PARTNERS, MatchConfig
from duet.services.matchmaker.replicas.pg_ownership import ReplicaIdInUse
from duet.services.matchmaker.replicas.shards import ShardConfigError, ShardMap, parse_shards
from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.matchmaker.serve import serve_matchmaker
from duet.services.metrics.exposition import DEFAULT_METRICS_HOST, METRICS_PATH
from duet.services.routing_server.server import serve_routing
from duet.services.rpc.server import install_stop_signals

CLUSTER_KEY_ENV = "DUET_CLUSTER_KEY"

logger = logging.getLogger("duet.cli")


def serve_until_stopped(log_level: str, serve: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run one service in the foreground: logging on, SIGINT/SIGTERM set its stop event."""
    configure_logging(log_level)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve(stop)

    asyncio.run(main())
    return 0


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port`` / ``--metrics-host``: where the service serves Prometheus metrics (off by default)."""
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help=f"serve Prometheus metrics at http://HOST:PORT{METRICS_PATH}, 0 = any free port (default: off)",
    )
    parser.add_argument(
        "--metrics-host",
        default=DEFAULT_METRICS_HOST,
        help="address to serve metrics on (default: %(default)s: they describe live calls, keep them private)",
    )


def add_auth_arguments(parser: argparse.ArgumentParser, *, own_token: str | None) -> None:
    """``--auth-secrets`` (the secrets callers' tokens are verified with) and, for a service that
    calls others, ``--token-file`` (its own service token); ``own_token`` is how to mint one."""
    parser.add_argument(
        "--auth-secrets",
        type=Path,
        default=None,
        metavar="FILE",
        help=(
            f"token-signing secrets file (default: ${SECRETS_ENV}, else ${USER_SECRET_ENV} / "
            f"${SERVICE_SECRET_ENV}); `duet up` makes one in .duet/ and passes it"
        ),
    )
    if own_token is not None:
        parser.add_argument(
            "--token-file",
            type=Path,
            default=None,
            metavar="FILE",
            help=f"this service's own token (default: ${SERVICE_TOKEN_ENV}; mint one: {own_token})",
        )


def load_auth_secrets(args: argparse.Namespace) -> AuthSecrets:
    secrets = find_secrets(args.auth_secrets)
    if secrets is None:
        raise SystemExit(
            f"no token-signing secrets: give --auth-secrets FILE or set ${SECRETS_ENV} "
            "(`duet up` makes one: .duet/auth-secrets.json)"
        )
    return secrets


def load_own_token(args: argparse.Namespace, mint: str) -> str:
    token = load_service_token(args.token_file)
    if token is None:
        raise SystemExit(f"no service token: set ${SERVICE_TOKEN_ENV} or give --token-file FILE (mint one: {mint})")
    return token


def load_topology(path: Path | None) -> Topology:
    """The topology file at ``path`` (YAML or JSON), or the shipped world topology; a bad file ends the command.

    The message lists every problem with its line and field.
    """
    try:
        return load_topology_file(path) if path is not None else load_world_topology()
    except TopologyError as exc:
        raise SystemExit(str(exc)) from exc


# -- routing ------------------------------------------------------------------

ROUTING_HELP = "Serve ingress and route selection over the edge topology."


def add_routing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default="127.0.0.1:50051", help="address to serve on (default: %(default)s)")
    parser.add_argument(
        "--topology",
        type=Path,
        default=None,
        help=(
            "topology file, YAML or JSON (docs/operations.md; default: the shipped world topology, 13 regions). "
            "With a database, used only until a topology is applied: after that the last applied one is restored"
        ),
    )
    parser.add_argument(
        "--reset-topology",
        action="store_true",
        help="serve the --topology file even when the database holds a topology applied since (recorded in the audit log)",
    )
    parser.add_argument(
        "--geoip-db",
        type=Path,
        action="append",
        default=None,
        metavar="MMDB",
        help="GeoIP2-City-compatible mmdb for client locations; repeat to stack several (the first that knows an "
        "address answers). Default: DB-IP City Lite when installed (`duet geoip install`), else none, and every "
        "client falls back to the default region",
    )
    parser.add_argument(
        "--default-region",
        default=None,
        help="region for clients that cannot be located (default: the topology's first)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL for registered edges and the topology audit log (default: none; the log is then kept in memory)",
    )
    parser.add_argument(
        "--link-weights",
        choices=("measured", "declared"),
        default="measured",
        help="route by the RTT and loss edges measure with probes (with hysteresis), or by the declared ones; "
        "either way a link its edges report unanswered carries no routes (default: %(default)s)",
    )
    add_metrics_arguments(parser)
    add_auth_arguments(parser, own_token=None)
    parser.add_argument("--log-level", default="INFO")


def run_routing(args: argparse.Namespace) -> int:
    topology = load_topology(args.topology)
    secrets = load_auth_secrets(args)

    async def serve(stop: asyncio.Event) -> None:
        await serve_routing(
            topology,
            geoip_db=args.geoip_db if args.geoip_db is not None else default_geoip_databases(),
            default_region=args.default_region,
            bind=args.bind,
            database=args.database_url,
            secrets=secrets,
            stop=stop,
            topology_source=str(args.topology) if args.topology else "the shipped world topology",
            reset_topology=args.reset_topology,
            measured_weights=args.link_weights == "measured",
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )

    return serve_until_stopped(args.log_level, serve)


def default_geoip_databases() -> list[Path]:
    installed = installed_default_database()
    if installed is None:
        logger.warning(
            "no GeoIP database installed (%s): clients are placed in the default region; run `duet geoip install`",
            default_database_path(),
        )
        return []
    return [installed]


# -- matchmaker ---------------------------------------------------------------

MATCHMAKER_HELP = "Serve the client Session stream: pairing, SDP relay, bridging, call records."
MATCHMAKER_MINT = "duet token mint --role matchmaker"


def add_matchmaker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--routing", default="127.0.0.1:50051", help="routing service address (default: %(default)s)")
    parser.add_argument("--bind", default="127.0.0.1:50052", help="address to serve on (default: %(default)s)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL (default: $DUET_DATABASE_URL, else a private local cluster in .duet/)",
    )
    parser.add_argument(
        "--trust-forwarded-for",
        action="store_true",
        help="take the client address from x-forwarded-for metadata (only behind a trusted proxy)",
    )
    parser.add_argument(
        "--replica-id",
        default=None,
        metavar="ID",
        help="this replica's name among matchmakers sharing the database, unique among the live ones "
        "(default: HOST-PID; docs/replicas.md)",
    )
    parser.add_argument(
        "--shards",
        type=_shards,
        default=ShardMap(),
        metavar="MAP",
        help="pool shards as NAME=REGION,REGION;NAME=* (* = every region listed nowhere), the same on every "
        "replica; users in different shards never meet (default: one shard, world; docs/replicas.md)",
    )
    parser.add_argument(
        "--avoid-recent",
        type=_non_negative,
        default=RECENT_PARTNERS,
        metavar="N",
        help="never pair a user again with one of their last N partners (default: %(default)s; 0 allows rematches)",
    )
    d = MatchConfig()
    parser.add_argument(
        "--rematch-window",
        type=_seconds,
        default=d.rematch_window_s,
        metavar="S",
        help="nor pair two users who met within the last S seconds (default: %(default)g; 0: off)",
    )
    parser.add_argument(
        "--ticket-ttl",
        type=_positive_seconds,
        default=d.ticket_ttl_s,
        metavar="S",
        help="a ticket not matched within S seconds expires and its client is told (default: %(default)g)",
    )
    parser.add_argument(
        "--interests-optional-after",
        type=_seconds,
        default=d.relax.interests_optional_after_s,
        metavar="S",
        help="after S seconds of waiting, shared interests stop being required (default: %(default)g)",
    )
    parser.add_argument(
        "--anywhere-after",
        type=_seconds,
        default=d.relax.anywhere_after_s,
        metavar="S",
        help="after S seconds of waiting, a 'near me' search widens to anywhere (default: %(default)g)",
    )
    parser.add_argument(
        "--near-rtt",
        type=_seconds,
        default=d.near_rtt_ms,
        metavar="MS",
        help="'near me' = same region or a reference RTT up to MS milliseconds (default: %(default)g)",
    )
    parser.add_argument(
        "--review-threshold",
        type=_positive_int,
        default=d.review_threshold,
        metavar="N",
        help="a user reported by N different people is held for review, not matched (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate,
        default=(d.rate_limit_requests, d.rate_limit_per_s),
        metavar="N/S",
        help=f"find/next requests per user: N in S seconds (default: {d.rate_limit_requests}/{d.rate_limit_per_s:g})",
    )
    parser.add_argument(
        "--ring-timeout",
        type=_positive_seconds,
        default=d.ring_timeout_s,
        metavar="S",
        help="a friend call not answered within S seconds ends with 'no answer' (default: %(default)g)",
    )
    add_metrics_arguments(parser)
    add_auth_arguments(parser, own_token=MATCHMAKER_MINT)
    parser.add_argument("--log-level", default="INFO")


def matchmaker_config(args: argparse.Namespace) -> MatchConfig:
    requests, per_s = args.rate_limit
    return MatchConfig(
        recent_partners=args.avoid_recent,
        rematch_window_s=args.rematch_window,
        ticket_ttl_s=args.ticket_ttl,
        relax=RelaxSchedule(args.interests_optional_after, args.anywhere_after),
        near_rtt_ms=args.near_rtt,
        review_threshold=args.review_threshold,
        rate_limit_requests=requests,
        rate_limit_per_s=per_s,
        ring_timeout_s=args.ring_timeout,
    )


def _shards(value: str) -> ShardMap:
    try:
        return parse_shards(value)
    except ShardConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        n = -1.0
    if not 0 <= n < float("inf"):
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of 0 or more")
    return n


def _positive_seconds(value: str) -> float:
    n = _seconds(value)
    if n == 0:
        raise argparse.ArgumentTypeError(f"'{value}': give more than 0")
    return n


def _positive_int(value: str) -> int:
    n = _non_negative(value)
    if n == 0:
        raise argparse.ArgumentTypeError(f"'{value}': give 1 or more")
    return n


def _rate(value: str) -> tuple[int, float]:
    count, sep, per = value.partition("/")
    try:
        parsed = (int(count), float(per))
    except ValueError:
        parsed = (0, 0.0)
    if not sep or parsed[0] < 1 or not 0 < parsed[1] < float("inf"):
        raise argparse.ArgumentTypeError(f"'{value}' is not a rate like 20/10 (20 requests in 10 seconds)")
    return parsed


def _non_negative(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number of 0 or more")
    return n


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"'{value}' is not a port number (0-65535; 0 = any free port)")
    return n


def run_matchmaker(args: argparse.Namespace) -> int:
    secrets = load_auth_secrets(args)
    token = load_own_token(args, MATCHMAKER_MINT)

    async def serve(stop: asyncio.Event) -> None:
        async with database_url(args.database_url) as dsn:
            try:
                await serve_matchmaker(
                    args.routing,
                    dsn,
                    bind=args.bind,
                    trust_forwarded_for=args.trust_forwarded_for,
                    config=matchmaker_config(args),
                    secrets=secrets,
                    token=token,
                    stop=stop,
                    metrics_port=args.metrics_port,
                    metrics_host=args.metrics_host,
                    replica_id=args.replica_id,
                    shards=args.shards,
                )
            except ReplicaIdInUse as exc:
                raise SystemExit(str(exc)) from None

    return serve_until_stopped(args.log_level, serve)


# -- edge ---------------------------------------------------------------------

EDGE_HELP = f"Terminate WebRTC legs and forward RTP between edges (needs {CLUSTER_KEY_ENV})."


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--edge-id", required=True, help="this edge's id as declared in the topology, e.g. fra-1")
    parser.add_argument("--routing", default="127.0.0.1:50051", help="routing service address (default: %(default)s)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address for control, backbone and WebRTC media (default: %(default)s)"
    )
    parser.add_argument("--control-port", type=int, default=0, help="EdgeControl gRPC port (default: any free port)")
    parser.add_argument("--backbone-port", type=int, default=0, help="backbone UDP port (default: any free port)")
    add_metrics_arguments(parser)
    add_auth_arguments(parser, own_token="duet token mint --role edge --edge-id EDGE_ID")
    parser.add_argument("--log-level", default="INFO")


def run_edge(args: argparse.Namespace) -> int:
    key = os.environ.get(CLUSTER_KEY_ENV)
    if not key:
        raise SystemExit(
            f"{CLUSTER_KEY_ENV} is not set: edges authenticate backbone packets with the cluster's shared key"
        )
    secrets = load_auth_secrets(args)
    token = load_own_token(args, f"duet token mint --role edge --edge-id {args.edge_id}")

    async def serve(stop: asyncio.Event) -> None:
        await serve_edge(
            args.edge_id,
            args.routing,
            key.encode(),
            host=args.host,
            control_port=args.control_port,
            backbone_port=args.backbone_port,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            secrets=secrets,
            token=token,
            stop=stop,
        )

    return serve_until_stopped(args.log_level, serve)
