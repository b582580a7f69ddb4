"""The ``duet`` command: one subcommand per module of this package."""

from __future__ import annotations

import argparse
import os
import sys

from duet.services.devkit.errors import SetupError

DESCRIPTION = """\
Duet: 1v1 video calls matched by a gRPC matchmaker and carried by WebRTC edge relays.

  duet up          start a local cluster, place demo calls, serve until Ctrl-C (what `make run` runs)
  duet demo        start a local cluster, place demo calls, print a JSON summary, exit
  duet call        place one call from a simulated client against a running cluster
  duet friends     list or remove your friends (friends are made after a call)
  duet calls       recent calls with their connect-time breakdown (ops-read)
  duet moderation  who is held for review after reports; clear a hold (ops)
  duet web         serve the browser client and its gateway in front of a running matchmaker
  duet token mint  print a development user or service token (signed with the local cluster's secrets)
  duet geoip       install or locate the default GeoIP database (DB-IP City Lite)
  duet topology    show, diff, apply, drain, link and lint the topology; its audit log
  duet routing | matchmaker | edge   run one service (the local cluster starts these for you)
"""


def build_parser() -> argparse.ArgumentParser:
    from duet.services.cli import (
        call,
        calls,
        cluster_commands,
        friends,
        geoip,
        moderation,
        serve,
        token,
        topology,
        web,
    )

    parser = argparse.ArgumentParser(
        prog="duet", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser(
        "up", help="local cluster + demo calls, then serve until Ctrl-C", description=cluster_commands.UP_HELP
    )
    cluster_commands.add_arguments(up, serve=True)
    up.set_defaults(func=lambda a: cluster_commands.run(a, serve=True))

    demo = sub.add_parser(
        "demo", help="local cluster + demo calls, JSON summary, exit", description=cluster_commands.DEMO_HELP
    )
    cluster_commands.add_arguments(demo, serve=False)
    demo.set_defaults(func=lambda a: cluster_commands.run(a, serve=False))

    place = sub.add_parser(
        "call", help="one simulated client places a call against a running cluster", description=call.HELP
    )
    call.add_arguments(place)
    place.set_defaults(func=call.run)
    friend_list = sub.add_parser("friends", help="list or remove your friends", description=friends.HELP)
    friends.add_arguments(friend_list)
    friend_list.set_defaults(func=friends.run)

    recent = sub.add_parser(
        "calls",
        help="recent calls with their connect-time breakdown",
        description=calls.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    calls.add_arguments(recent)
    recent.set_defaults(func=calls.run)

    gateway = sub.add_parser(
        "web", help="serve the browser client and its WebSocket gateway to a matchmaker", description=web.HELP
    )
    web.add_arguments(gateway)
    gateway.set_defaults(func=web.run)

    tokens = sub.add_parser(
        "token",
        help="print a development user or service token",
        description=token.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token.add_arguments(tokens)
    tokens.set_defaults(func=token.run)
    geo = sub.add_parser(
        "geoip",
        help="install or locate the default GeoIP database",
        description=geoip.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    geoip.add_arguments(geo)
    geo.set_defaults(func=geoip.run)
    topo = sub.add_parser(
        "topology",
        help="show, diff, apply, drain, link and lint the topology; its audit log",
        description=topology.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    topology.add_arguments(topo)
    topo.set_defaults(func=topology.run)

    moderate = sub.add_parser(
        "moderation",
        help="who is held for review after reports; clear a hold",
        description=moderation.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    moderation.add_arguments(moderate)
    moderate.set_defaults(func=moderation.run)

    routing = sub.add_parser("routing", help="run the routing service", description=serve.ROUTING_HELP)
    serve.add_routing_arguments(routing)
    routing.set_defaults(func=serve.run_routing)

    mm = sub.add_parser("matchmaker", help="run the matchmaker", description=serve.MATCHMAKER_HELP)
    serve.add_matchmaker_arguments(mm)
    mm.set_defaults(func=serve.run_matchmaker)

    edge = sub.add_parser("edge", help="run one edge node", description=serve.EDGE_HELP)
    serve.add_edge_arguments(edge)
    edge.set_defaults(func=serve.run_edge)
    return parser


def main(argv: list[str] | None = None) -> int:
    # gRPC's fork handlers only log noise when we start PostgreSQL or child services
    # (and they restart gRPC's threads in every forked child); read when grpc is imported.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from duet.services.auth.secrets import SecretsError
    from duet.services.devkit.local_cluster import die_with_parent_if_asked
    from duet.services.rpc.server import CannotListen  # imports grpc: only after the line above

    die_with_parent_if_asked()  # a service the local cluster started
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (SetupError, CannotListen, SecretsError) as exc:
        # An expected condition of this machine or its state: the message says what to do; a traceback would not.
        print(f"duet {args.command}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
