"""``duet calls``: recent calls with their connect-time breakdown, from the matchmaker's call records."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import grpc

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.cli.ops_credentials import OPS_TOKEN_ENV, NoOpsToken, ops_token
from duet.services.cli.ops_rpc import (
    DEFAULT_MATCHMAKER,
    MATCHMAKER_ENV,
    CommandFailed,
    count_arg,
    matchmaker_address,
    rpc_failed,
    user_id_arg,
)
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

HELP = """\
Show recent calls, newest first, with when each stage happened in ms after
the match (route, bridged, first packet at the edge, first frame), per side.
Client stages are on the matchmaker's clock when the client answered its
clock probes: the offset and its uncertainty (+-) are shown per side.

Reads the call records through the matchmaker's ListCalls with an ops-read
token: --token, else $DUET_OPS_TOKEN, else one minted from a local cluster's
secrets (./.duet/auth-secrets.json or $DUET_AUTH_SECRETS).
"""

RPC_TIMEOUT_S = 10.0
MAX_LIMIT = 1000
# The columns, in ms after the match, and the stage each reads.
COLUMNS = (
    ("route", "route_picked"),
    ("bridged", "bridged"),
    ("1st pkt@edge", "first_packet_at_edge"),
    ("1st frame", "first_frame"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--matchmaker",
        default=None,
        help=f"matchmaker address (default: ${MATCHMAKER_ENV}, else a local cluster's from ./.duet, "
        f"else {DEFAULT_MATCHMAKER})",
    )
    parser.add_argument(
        "--limit",
        type=count_arg(MAX_LIMIT, "calls"),
        default=20,
        metavar="N",
        help="show N calls (default: %(default)s)",
    )
    parser.add_argument("--user", type=user_id_arg, default=None, metavar="USER_ID", help="only calls this user was in")
    parser.add_argument("--json", action="store_true", help="print the records as JSON lines instead of a table")
    parser.add_argument(
        "--token", default=None, help=f"ops token, role ops-read (default: ${OPS_TOKEN_ENV}, else minted)"
    )


def ops_read_token(given: str | None) -> str:
    try:
        return ops_token(Role.OPS_READ, given)
    except NoOpsToken as exc:
        raise CommandFailed(str(exc)) from None


def list_calls(address: str, limit: int, user: str, token: str) -> list[matchmaker_pb2.CallRecord]:
    with grpc.insecure_channel(address) as channel:
        stub = matchmaker_pb2_grpc.MatchmakerStub(channel)
        try:
            reply = stub.ListCalls(
                matchmaker_pb2.ListCallsRequest(limit=limit, user_id=user),
                timeout=RPC_TIMEOUT_S,
                metadata=bearer_metadata(token),
            )
        except grpc.RpcError as exc:
            raise rpc_failed(exc, address, "ListCalls", Role.OPS_READ.value) from None
    return list(reply.calls)


def _after(stages: matchmaker_pb2.CallSide, name: str) -> str:
    value = getattr(stages.stages, name)
    matched = stages.stages.matched
    return f"+{value - matched:.1f}" if value and matched else "-"


def _clock(side: matchmaker_pb2.CallSide) -> str:
    if not side.clock_synced:
        return "client clock"
    return f"{side.clock_offset_ms:+.1f} +-{side.clock_uncertainty_ms:.1f}"


def format_calls(calls: list[matchmaker_pb2.CallRecord]) -> list[str]:
    """The table `duet calls` prints: one header line per call, one line per side."""
    if not calls:
        return ["no calls recorded"]
    lines = []
    header = f"  {'user':<16}{'edge':<10}{'waited':>9}" + "".join(f"{c:>14}" for c, _ in COLUMNS)
    header += f"{'connect_ms':>12}  {'clock offset (ms)':<20}"
    for record in calls:
        when = datetime.fromtimestamp(record.created_at / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        ended = f", {record.end_reason}" if record.end_reason else ""
        lines.append(
            f"call {record.call_id[:12]}  {when} UTC  {record.state}{ended}  route {' > '.join(record.route)} "
            f"({record.route_rtt_ms:.0f} ms RTT)"
        )
        lines.append(header)
        for side in (record.a, record.b):
            s = side.stages
            waited = f"{s.matched - s.queued:.1f}" if s.matched and s.queued else "-"
            connect = f"{side.connect_ms:.1f}" if side.connect_ms else "-"
            row = f"  {side.user_id[:15]:<16}{side.edge_id:<10}{waited:>9}"
            row += "".join(f"{_after(side, name):>14}" for _, name in COLUMNS)
            lines.append(row + f"{connect:>12}  {_clock(side):<20}")
    lines.append("(times in ms after the match; waited = queued -> matched; all on the matchmaker's clock")
    lines.append(" except 1st pkt@edge, the edge's, and client stages marked 'client clock')")
    return lines


def run(args: argparse.Namespace) -> int:
    address = matchmaker_address(args.matchmaker)
    try:
        calls = list_calls(address, args.limit, args.user or "", ops_read_token(args.token))
    except CommandFailed as exc:
        print(f"duet calls: {exc}", file=sys.stderr, flush=True)
        return 1
    if args.json:
        from google.protobuf import json_format

        for record in calls:
            print(json.dumps(json_format.MessageToDict(record), separators=(",", ":")))
    else:
        print("\n".join(format_calls(calls)))
    return 0
