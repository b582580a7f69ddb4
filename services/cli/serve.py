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
from duet.services.cli.log_setup import configure_logging
from duet.services.devkit.embedded_postgres import database_url
from duet.services.edge_server.server import serve_edge
from duet.services.matchmaker.core import RECENT_PARTNERS
from duet.services.matchmaker.server import serve_matchmaker
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
    parser.add_argument("--log-level", default="INFO")


def run_routing(args: argparse.Namespace) -> int:
    topology = load_topology(args.topology)

    async def serve(stop: asyncio.Event) -> None:
        await serve_routing(
            topology,
            geoip_db=args.geoip_db if args.geoip_db is not None else default_geoip_databases(),
            default_region=args.default_region,
            bind=args.bind,
            database=args.database_url,
            stop=stop,
            topology_source=str(args.topology) if args.topology else "the shipped world topology",
            reset_topology=args.reset_topology,
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
        "--avoid-recent",
        type=_non_negative,
        default=RECENT_PARTNERS,
        metavar="N",
        help="never pair a user again with one of their last N partners (default: %(default)s; 0 allows rematches)",
    )
    parser.add_argument("--log-level", default="INFO")


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
    async def serve(stop: asyncio.Event) -> None:
        async with database_url(args.database_url) as dsn:
            await serve_matchmaker(
                args.routing,
                dsn,
                bind=args.bind,
                trust_forwarded_for=args.trust_forwarded_for,
                recent_partners=args.avoid_recent,
                stop=stop,
            )

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
    parser.add_argument("--log-level", default="INFO")


def run_edge(args: argparse.Namespace) -> int:
    key = os.environ.get(CLUSTER_KEY_ENV)
    if not key:
        raise SystemExit(
            f"{CLUSTER_KEY_ENV} is not set: edges authenticate backbone packets with the cluster's shared key"
        )

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
            stop=stop,
        )

    return serve_until_stopped(args.log_level, serve)
