"""``duet up`` and ``duet demo``: the whole system on this machine, with demo calls."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path

from duet.routing.reference import region_sites
from duet.services.cli.log_setup import configure_logging
from duet.services.devkit.demo import run_demo
from duet.services.devkit.greeter import serve_forever
from duet.services.devkit.local_cluster import DEFAULT_REGIONS, LocalCluster
from duet.services.devkit.wan.cluster import DEFAULT_CONTROL_REGION, ClusterEmulation
from duet.services.devkit.wan.profile import DEFAULT_LAST_MILE_MS
from duet.services.matchmaker.replicas.shards import ShardConfigError, parse_shards
from duet.services.rpc.server import CannotListen, install_stop_signals
from duet.services.web.app import WebServer
from duet.services.web.demo_regions import DemoRegions

UP_HELP = """\
Start the whole system on this machine: a private PostgreSQL (unless
--database-url or DUET_DATABASE_URL is given), the routing service, the
matchmaker and one edge process per region, all on loopback. Then place demo
calls between simulated users in different regions, print each call's
connect-time breakdown, and keep serving until Ctrl-C. While it serves, a
greeter bot waits in the pool so `duet call` from another terminal connects,
and the web client is served (at http://127.0.0.1:8080/ unless --web-port says
otherwise): open it in a browser and press "Talk to someone".

--world starts the world instead: all 13 shipped regions, one edge each,
with WAN emulation (a test and benchmark facility): backbone links delayed by
RTT/2 each way, a last mile on every client leg, and the matchmaker and
routing service in one region, their gRPC with clients and edges elsewhere
delayed through TCP delay proxies.
"""

DEMO_HELP = """\
Start the local cluster, place the demo calls, print each call's connect-time
breakdown and exit. The last line is one JSON object:
{"calls": N, "connected": N, "connect_ms_p50": x, "connect_ms_max": y}.
Exits non-zero when a call does not connect. --world: the same on all 13
shipped regions under WAN emulation (see `duet up --help`).
"""

# The world demo's users live far apart: the worst pair of the shipped regions and one more.
WORLD_DEMO_REGIONS = ("Sydney", "Johannesburg", "Virginia")


def add_arguments(parser: argparse.ArgumentParser, *, serve: bool) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL (default: $DUET_DATABASE_URL, else a private cluster in STATE_DIR/pg)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".duet"),
        help=(
            "local state: PostgreSQL data (in STATE_DIR/pg; as root, under /var/tmp/duet-postgres when the "
            "server's account cannot reach STATE_DIR), logs, demo geo database (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--regions",
        default=None,
        help=f"comma-separated regions, one edge each (default: {','.join(DEFAULT_REGIONS)}; with --world all 13)",
    )
    parser.add_argument(
        "--world",
        action="store_true",
        help="all 13 shipped regions (unless --regions) with WAN emulation of backbone, last mile and control plane",
    )
    parser.add_argument(
        "--control-region",
        default=DEFAULT_CONTROL_REGION,
        help="with --world: the region the matchmaker and routing service run in (default: %(default)s)",
    )
    parser.add_argument(
        "--last-mile-ms",
        type=float,
        default=DEFAULT_LAST_MILE_MS,
        help="with --world: one-way delay of every client's last mile (default: %(default)s)",
    )
    parser.add_argument(
        "--matchmakers",
        type=int,
        default=1,
        metavar="N",
        help="matchmaker replicas sharing the database; a replica that dies is taken over by the others "
        "(default: %(default)s; docs/replicas.md)",
    )
    parser.add_argument(
        "--shards",
        default="",
        metavar="MAP",
        help="the replicas' pool shards, NAME=REGION,REGION;NAME=* (default: one shard, world)",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=6,
        help="demo calls to place, half of them by 'next' on a warm leg (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="log level of this supervisor and its services (default: %(default)s; service logs go to STATE_DIR/logs)",
    )
    if serve:
        parser.add_argument("--no-bot", action="store_true", help="do not keep a greeter bot waiting for `duet call`")
        parser.add_argument(
            "--web-port",
            type=int,
            default=8080,
            help="loopback port of the web client and its gateway, 0 = any free port (default: %(default)s)",
        )


def run(args: argparse.Namespace, *, serve: bool) -> int:
    configure_logging(args.log_level)
    if args.matchmakers < 1:
        raise SystemExit(f"--matchmakers: give 1 or more, got {args.matchmakers}")
    try:
        parse_shards(args.shards)
    except ShardConfigError as exc:
        raise SystemExit(f"--shards: {exc}") from None
    if args.regions is not None:
        regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    else:
        regions = list(region_sites()) if args.world else list(DEFAULT_REGIONS)
    emulation = None
    if args.world:
        try:
            emulation = ClusterEmulation(control_region=args.control_region, last_mile_ms=args.last_mile_ms)
        except ValueError as exc:
            raise SystemExit(f"--last-mile-ms: {exc}") from None
    # Demo users: spread over the world when there is one, else over the cluster's regions in order.
    demo_regions = [r for r in WORLD_DEMO_REGIONS if r in regions] if args.world else []
    if len(demo_regions) < min(3, len(regions)):
        demo_regions = regions
    serving = asyncio.Event()  # `duet up` reached its serving phase, which Ctrl-C ends normally

    async def body(stop: asyncio.Event) -> int:
        what = f"{len(regions)} regions, WAN emulated, control plane in {args.control_region}" if emulation else ""
        print(f"starting the local cluster ({what or ', '.join(regions)}) ...", flush=True)
        service_level = "INFO" if args.log_level.upper() == "WARNING" else args.log_level
        async with (
            LocalCluster(
                state_dir=args.state_dir,
                database=args.database_url,
                regions=regions,
                log_level=service_level,
                emulation=emulation,
                matchmakers=args.matchmakers,
                shards=args.shards,
            ) as info,
            contextlib.AsyncExitStack() as stack,
        ):
            print(f"matchmaker {', '.join(info.matchmakers)}   routing {info.routing}")
            if emulation is not None:
                print(
                    f"WAN emulation on (test facility): matchmaker and routing in {emulation.control_region}, "
                    f"last mile {emulation.last_mile_ms:g} ms; demo clients dial the matchmaker through "
                    "a delay proxy per region (the web client and `duet call` reach it directly)"
                )
            if serve:
                # The gateway runs in this supervisor's event loop, not as a child like the services:
                # it holds no state and only relays JSON frames, so a process of its own would cost a
                # Python start and memory on a small machine for nothing; here a taken port stops
                # `duet up` at once, and it stops with the rest. Demo regions let a page pick its edge.
                # A local cluster has no login: the page signs in as a guest with a token the gateway mints.
                web = WebServer(
                    info.matchmakers,  # every replica: a session finding one unavailable opens on the next
                    listen=f"127.0.0.1:{args.web_port}",
                    demo_regions=DemoRegions(regions),
                    guest_token_secret=info.secrets.require_user("the web client's guests are signed in with it"),
                )
                try:
                    web_url = await stack.enter_async_context(web)
                except CannotListen as exc:
                    raise CannotListen(f"{exc} (choose another with --web-port PORT, 0 = any free port)") from exc
                print(f"web client {web_url}")
            print("edges " + "   ".join(f"{k} {v}" for k, v in info.edges.items()))
            print("edge metrics " + "   ".join(f"{k} {v}" for k, v in info.edge_metrics.items()))
            print(f"metrics matchmaker {', '.join(info.matchmakers_metrics)}   routing {info.routing_metrics}")
            if info.database_where:
                print(info.database_where)
            print(f"service logs in {info.log_dir}/", flush=True)
            summary = await run_demo(info, demo_regions, calls=args.calls, stop=stop)
            if serve:
                serving.set()
                print(f'\nweb client: open {web_url} in a browser and press "Talk to someone"', flush=True)
                await serve_forever(info, regions, stop=stop, bot=not args.no_bot)
                print("shutting down ...", flush=True)
        if serve:
            print("stopped cleanly", flush=True)
            return 0
        print(json.dumps(summary), flush=True)  # the last line: one JSON object
        return 0 if summary["connected"] == summary["calls"] else 1

    async def main() -> int:
        stop = asyncio.Event()
        install_stop_signals(stop)
        work = asyncio.create_task(body(stop))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done() and not serving.is_set():
            # Ctrl-C before serving: unwind clients, services and PostgreSQL, whatever stage we were in.
            # (Once serving, the body sees `stop` and shuts down in order by itself.)
            print("shutting down ...", flush=True)
            work.cancel()
        stopped.cancel()
        try:
            return await work
        except asyncio.CancelledError:
            print("stopped cleanly", flush=True)
            # Ctrl-C is how `duet up` is meant to end once it serves; earlier it interrupted the run.
            return 0 if serving.is_set() else 130

    return asyncio.run(main())
