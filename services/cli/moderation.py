"""``duet moderation``: who is held for review, the reports about a user, and clearing a hold."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.cli.ops_credentials import OPS_TOKEN_ENV, NoOpsToken, ops_token
from duet.services.cli.ops_rpc import CommandFailed, count_arg, matchmaker_address, rpc_failed, user_id_arg
from duet.v1 import moderation_pb2, moderation_pb2_grpc

HELP = """\
Users reported by enough distinct people (the matchmaker's --review-threshold)
are held for review: they cannot be matched until a moderator clears them.

  duet moderation held              who is held now, most reported first
  duet moderation reports USER      the reports about USER and past reviews
  duet moderation clear USER --note "why"
                                    clear USER: the reports so far stop counting

Looking needs an ops-read token, clearing ops-admin: --token, else
$DUET_OPS_TOKEN, else one minted from a local cluster's secrets
(./.duet/auth-secrets.json or $DUET_AUTH_SECRETS). Leaving someone held
needs no command.
"""

RPC_TIMEOUT_S = 10.0
MAX_LIMIT = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--matchmaker", default=None, help="matchmaker address (default: as for `duet calls`)")
    common.add_argument("--token", default=None, help=f"ops token (default: ${OPS_TOKEN_ENV}, else minted)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    held = sub.add_parser("held", parents=[common], help="users held for review now")
    held.add_argument(
        "--limit", type=count_arg(MAX_LIMIT), default=100, metavar="N", help="at most N users (default: 100)"
    )
    reports = sub.add_parser("reports", parents=[common], help="the reports about a user and past reviews")
    reports.add_argument("user", type=user_id_arg, metavar="USER_ID")
    reports.add_argument(
        "--limit", type=count_arg(MAX_LIMIT), default=100, metavar="N", help="at most N reports (default: 100)"
    )
    clear = sub.add_parser("clear", parents=[common], help="clear a user: the reports so far stop counting")
    clear.add_argument("user", type=user_id_arg, metavar="USER_ID")
    clear.add_argument("--note", default="", help="why (kept with the review; up to 500 characters)")


def _when(epoch_ms: float) -> str:
    if not epoch_ms:
        return "never"
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _call(address: str, rpc: str, request: Any, token: str, role: Role) -> Any:
    with grpc.insecure_channel(address) as channel:
        method: Callable[..., Any] = getattr(moderation_pb2_grpc.ModerationStub(channel), rpc)
        try:
            return method(request, timeout=RPC_TIMEOUT_S, metadata=bearer_metadata(token))
        except grpc.RpcError as exc:
            raise rpc_failed(exc, address, rpc, role.value) from None


def format_held(reply: moderation_pb2.ListHeldResponse) -> list[str]:
    if not reply.users:
        return [f"nobody is held for review (a hold takes {reply.review_threshold} distinct reporters)"]
    lines = [f"{'user':<20}{'name':<24}{'reporters':>10}  {'last report':<24}last review"]
    for u in reply.users:
        lines.append(
            f"{u.user_id[:19]:<20}{u.display_name[:23]:<24}{u.reporters:>10}  "
            f"{_when(u.last_report_at):<24}{_when(u.last_review_at)}"
        )
    lines.append(f"(held: {reply.review_threshold} or more distinct reporters since the last review)")
    return lines


def format_reports(reply: moderation_pb2.ListReportsResponse) -> list[str]:
    u = reply.user
    state = "HELD for review" if reply.held else "not held"
    lines = [f"{u.user_id} ({u.display_name or 'no name'}): {state}; {u.reporters} reporters count now"]
    if not reply.reports:
        lines.append("no reports")
    for r in reply.reports:
        counts = "counts" if r.counts else "cleared"
        reason = repr(r.reason) if r.reason else "(no reason given)"
        lines.append(f"  {_when(r.created_at)}  by {r.reporter:<16} call {r.call_id[:12]:<13} {counts:<8} {reason}")
    for v in reply.reviews:
        lines.append(f"  reviewed {_when(v.reviewed_at)} by {v.reviewer}: {v.reports_cleared} cleared; {v.note!r}")
    return lines


def run(args: argparse.Namespace) -> int:
    address = matchmaker_address(args.matchmaker)
    role = Role.OPS_ADMIN if args.action == "clear" else Role.OPS_READ
    try:
        try:
            token = ops_token(role, args.token)
        except NoOpsToken as exc:
            raise CommandFailed(str(exc)) from None
        if args.action == "held":
            held = _call(address, "ListHeld", moderation_pb2.ListHeldRequest(limit=args.limit), token, role)
            print("\n".join(format_held(held)))
        elif args.action == "reports":
            about = moderation_pb2.ListReportsRequest(user_id=args.user, limit=args.limit)
            print("\n".join(format_reports(_call(address, "ListReports", about, token, role))))
        else:
            clear = moderation_pb2.ClearHoldRequest(user_id=args.user, note=args.note)
            review = _call(address, "ClearHold", clear, token, role).review
            print(f"cleared {args.user}: {review.reports_cleared} reports stop counting (reviewer {review.reviewer})")
    except CommandFailed as exc:
        print(f"duet moderation {args.action}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
