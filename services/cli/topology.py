"""``duet topology``: look at and change a running topology, check topology files, gate CI on connect time.

``validate`` and ``lint`` work on a file alone; the others talk to the routing
service's TopologyAdmin API (admin.proto). Errors are printed in words and
end the command with exit code 1 (2 for a command line that does not parse);
a change that fails is not applied at all.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from duet.routing.connect_model import LAST_MILE_MS
from duet.routing.lint import DEFAULT_BUDGET_MS, lint_topology
from duet.routing.topology import TopologyError
from duet.routing.topology_file import iter_problem_lines, load_topology_file
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.cli.ops_credentials import OPS_TOKEN_ENV, STATE_DIR, NoOpsToken, ops_token
from duet.services.devkit.local_cluster import running_cluster_address
from duet.v1 import admin_pb2, admin_pb2_grpc, common_pb2

ROUTING_ENV = "DUET_ROUTING"
# Read-only admin RPCs: a minted token for these has role ops-read; every other one needs ops-admin.
_READS = frozenset({"GetTopologyFile", "ListTopologyChanges"})
# A token minted for one command lives long enough for its call, no longer.
DEFAULT_ROUTING = "127.0.0.1:50051"
RPC_TIMEOUT_S = 30.0

HELP = f"""\
Show and change the running topology through the routing service, check
topology files, and gate CI on predicted connect times (docs/operations.md).

  duet topology show                      the running topology as a file
  duet topology validate FILE             check a file: every problem with its line and field
  duet topology diff FILE                 what applying FILE would change, and connect times per region pair
  duet topology apply FILE [--dry-run]    apply FILE (recorded in the audit log)
  duet topology drain EDGE | undrain EDGE  take an edge out of (or back into) service without cutting calls
  duet topology link A B [--rtt MS] [--loss P] [--down | --up]   change (or add) a backbone link
  duet topology log                       the audit log: who changed what, when
  duet topology lint FILE                 fail when a region pair's predicted connect time exceeds the budget

The routing service is --routing ADDRESS, else ${ROUTING_ENV}, else the one of
a local cluster (`duet up`) running from this folder, else {DEFAULT_ROUTING}.
Each call presents an ops token: --token, else ${OPS_TOKEN_ENV}, else one minted
for your user name from the local cluster's secrets (ops-read to look, ops-admin
to change), so the audit log says e.g. "ops-admin:alice".
"""


class CommandFailed(Exception):
    """Ends a subcommand with exit code 1 after printing this message."""


# ---- arguments ------------------------------------------------------------------


def _positive_ms(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        n = math.nan
    if not (math.isfinite(n) and n > 0):
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of milliseconds greater than 0")
    return n


def _non_negative_ms(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        n = math.nan
    if not (math.isfinite(n) and n >= 0):
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of milliseconds (0 or more)")
    return n


def _fraction(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        n = math.nan
    if not (math.isfinite(n) and 0 <= n <= 1):
        raise argparse.ArgumentTypeError(f"'{value}' is not a loss fraction between 0 and 1 (e.g. 0.01 for 1 %)")
    return n


def _limit(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 1 <= n <= 1000:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number from 1 to 1000")
    return n


def _add_routing(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--routing",
        default=None,
        metavar="ADDRESS",
        help=f"routing service host:port (default: ${ROUTING_ENV}, a local cluster's, or {DEFAULT_ROUTING})",
    )
    p.add_argument(
        "--token",
        default=None,
        help=(
            f"ops token (role ops-read to look, ops-admin to change; default: ${OPS_TOKEN_ENV}, else one minted "
            f"for you from a local cluster's secrets in {STATE_DIR})"
        ),
    )


def _add_impact(p: argparse.ArgumentParser, *, budget: bool = True) -> None:
    p.add_argument(
        "--matchmaker-region",
        default="",
        metavar="REGION",
        help="region the matchmaker runs in, for the connect-time prediction (default: the topology's first region)",
    )
    p.add_argument(
        "--last-mile-ms",
        type=_non_negative_ms,
        default=LAST_MILE_MS,
        metavar="MS",
        help="one-way client <-> edge delay of each last mile (default: %(default)g)",
    )
    if budget:
        p.add_argument(
            "--budget-ms",
            type=_positive_ms,
            default=DEFAULT_BUDGET_MS,
            metavar="MS",
            help="flag region pairs predicted over this connect time (default: %(default)g)",
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="topology_command", metavar="SUBCOMMAND", required=True)

    show = sub.add_parser("show", help="print the running topology as a topology file")
    _add_routing(show)
    show.set_defaults(topology_func=run_show)

    validate = sub.add_parser("validate", help="check a topology file; every problem with its line and field")
    validate.add_argument("file", type=Path, metavar="FILE")
    validate.set_defaults(topology_func=run_validate)

    for name, what in (("diff", "what applying FILE would change"), ("apply", "apply FILE to the running topology")):
        p = sub.add_parser(name, help=what)
        p.add_argument("file", type=Path, metavar="FILE")
        if name == "apply":
            p.add_argument("--dry-run", action="store_true", help="only show what would change (same as diff)")
        p.add_argument(
            "--changed-only", action="store_true", help="list only the region pairs whose connect time changes"
        )
        _add_impact(p)
        _add_routing(p)
        p.set_defaults(topology_func=run_apply, always_dry_run=name == "diff")

    for name, state, what in (
        ("drain", common_pb2.EDGE_STATE_DRAINING, "no new clients or transit for EDGE; its calls end naturally"),
        ("undrain", common_pb2.EDGE_STATE_ACTIVE, "put EDGE back in service"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("edge", metavar="EDGE", help="edge id, e.g. fra-1")
        _add_impact(p)
        _add_routing(p)
        p.set_defaults(topology_func=run_edge_state, edge_state=state)

    link = sub.add_parser("link", help="change a backbone link's RTT, loss or state, or add a link")
    link.add_argument("a", metavar="A", help="edge id of one end")
    link.add_argument("b", metavar="B", help="edge id of the other end")
    link.add_argument("--rtt", type=_positive_ms, default=None, metavar="MS", help="round-trip time, ms")
    link.add_argument("--loss", type=_fraction, default=None, metavar="P", help="loss fraction, 0..1")
    updown = link.add_mutually_exclusive_group()
    updown.add_argument("--down", dest="up", action="store_false", default=None, help="take the link out of service")
    updown.add_argument("--up", dest="up", action="store_true", help="put the link back in service")
    _add_impact(link)
    _add_routing(link)
    link.set_defaults(topology_func=run_link)

    log = sub.add_parser("log", help="the audit log of topology changes, newest first")
    log.add_argument("--limit", type=_limit, default=50, metavar="N", help="at most N entries (default: %(default)s)")
    _add_routing(log)
    log.set_defaults(topology_func=run_log)

    lint = sub.add_parser("lint", help="exit 1 when a region pair's predicted connect time exceeds the budget")
    lint.add_argument("file", type=Path, metavar="FILE")
    lint.add_argument("--all", action="store_true", help="list every region pair with its breakdown")
    _add_impact(lint)
    lint.set_defaults(topology_func=run_lint)


def run(args: argparse.Namespace) -> int:
    func: Callable[[argparse.Namespace], int] = args.topology_func
    try:
        return func(args)
    except CommandFailed as exc:
        print(f"duet topology {args.topology_command}: {exc}", file=sys.stderr, flush=True)
        return 1


# ---- talking to the routing service -----------------------------------------------


def routing_address(given: str | None) -> str:
    """--routing, else $DUET_ROUTING, else a local cluster's from ./.duet, else the default port."""
    if given:
        return given
    return os.environ.get(ROUTING_ENV) or running_cluster_address(STATE_DIR, "routing") or DEFAULT_ROUTING


def method_token(method: str, given: str | None) -> str:
    """The token for ``method``: ops-read for a look, ops-admin for a change (see ops_credentials)."""
    try:
        return ops_token(Role.OPS_READ if method in _READS else Role.OPS_ADMIN, given)
    except NoOpsToken as exc:
        raise CommandFailed(str(exc)) from None


_REFUSALS = {
    grpc.StatusCode.UNAUTHENTICATED: "not signed in",
    grpc.StatusCode.PERMISSION_DENIED: "not allowed",
    grpc.StatusCode.INVALID_ARGUMENT: "rejected",
    grpc.StatusCode.NOT_FOUND: "not found",
    grpc.StatusCode.FAILED_PRECONDITION: "refused",
    grpc.StatusCode.ABORTED: "conflict",
}


def _call(address: str, method: str, request: Any, *, mutating: bool, token: str | None) -> Any:
    metadata = bearer_metadata(method_token(method, token))
    with grpc.insecure_channel(address) as channel:
        stub = admin_pb2_grpc.TopologyAdminStub(channel)
        try:
            return getattr(stub, method)(request, timeout=RPC_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            details = exc.details() or ""
            nothing = "; nothing was applied" if mutating else ""
            # The server's own UNAVAILABLE (its audit log) explains itself; any other is gRPC's: no connection.
            if code is grpc.StatusCode.UNAVAILABLE and not details.startswith("the audit log"):
                raise CommandFailed(
                    f"cannot reach the routing service at {address} ({details}); is it running? "
                    f"Give its address with --routing ADDRESS{nothing}"
                ) from None
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise CommandFailed(
                    f"the routing service at {address} did not answer within {RPC_TIMEOUT_S:.0f} s"
                    + ("; the change may or may not have been applied: check `duet topology log`" if mutating else "")
                ) from None
            if code is grpc.StatusCode.UNIMPLEMENTED:
                raise CommandFailed(
                    f"the service at {address} has no topology admin API (is it a routing service?)"
                ) from None
            what = _REFUSALS.get(code, f"failed ({code.name})")
            raise CommandFailed(f"{what}: {details}{nothing}") from None


def _impact_options(args: argparse.Namespace) -> admin_pb2.ImpactOptions:
    return admin_pb2.ImpactOptions(matchmaker_region=args.matchmaker_region, last_mile_ms=args.last_mile_ms)


# ---- output ---------------------------------------------------------------------------


def _ms(value: float, state: int) -> str:
    if state == admin_pb2.PREDICTION_STATE_PREDICTED:
        return f"{value:.0f}"
    return "none" if state == admin_pb2.PREDICTION_STATE_UNREACHABLE else "-"


def _over(value: float, state: int, budget: float) -> bool:
    return state == admin_pb2.PREDICTION_STATE_UNREACHABLE or (
        state == admin_pb2.PREDICTION_STATE_PREDICTED and value > budget
    )


def format_impact(
    result: admin_pb2.TopologyChangeResult, budget_ms: float, last_mile_ms: float, *, changed_only: bool
) -> list[str]:
    """The per-pair table: before, after, the change, and a flag on every pair over the budget after it."""
    rows = []
    for p in result.impact:
        moved = p.before_state != p.after_state or (
            p.after_state == admin_pb2.PREDICTION_STATE_PREDICTED and round(p.before_ms, 1) != round(p.after_ms, 1)
        )
        over_after = _over(p.after_ms, p.after_state, budget_ms)
        if changed_only and not moved and not over_after:
            continue
        delta = ""
        if moved and admin_pb2.PREDICTION_STATE_PREDICTED == p.before_state == p.after_state:
            delta = f"{p.after_ms - p.before_ms:+.0f}"
        flag = ""
        if over_after:
            flag = (
                "CANNOT CONNECT"
                if p.after_state == admin_pb2.PREDICTION_STATE_UNREACHABLE
                else f"OVER {budget_ms:g} ms"
            )
        elif _over(p.before_ms, p.before_state, budget_ms):
            flag = "was over budget"
        pair = p.region_a if p.region_a == p.region_b else f"{p.region_a} - {p.region_b}"
        rows.append(
            f"  {pair:<36}{_ms(p.before_ms, p.before_state):>8}{_ms(p.after_ms, p.after_state):>8}{delta:>8}   {flag}"
        )
    over = sum(_over(p.after_ms, p.after_state, budget_ms) for p in result.impact)
    over_before = sum(_over(p.before_ms, p.before_state, budget_ms) for p in result.impact)
    head = [
        f"predicted connect time per region pair (floor, ms after the match; matchmaker in "
        f"{result.matchmaker_region}, last mile {last_mile_ms:g} ms each way):",
        f"  {'region pair':<36}{'before':>8}{'after':>8}{'change':>8}",
    ]
    if not rows:
        head = [head[0], "  no region pair's connect time changes"]
    summary = (
        f"{over} of {len(result.impact)} region pairs over {budget_ms:g} ms after the change ({over_before} before)"
    )
    return [*head, *rows, summary]


def _print_result(result: admin_pb2.TopologyChangeResult, args: argparse.Namespace, *, changed_only: bool) -> None:
    if result.changes:
        print("changes:")
        for line in result.changes:
            print(f"  {line}")
    else:
        print("no changes: the running topology already says this")
    for line in result.warnings:
        print(f"warning: {line}")
    if result.changes:
        for line in format_impact(result, args.budget_ms, args.last_mile_ms, changed_only=changed_only):
            print(line)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror or exc}; nothing was applied") from None
    except UnicodeDecodeError:
        raise CommandFailed(f"{path} is not UTF-8 text; nothing was applied") from None


def _invalid(path: Path, exc: TopologyError) -> str:
    return f"{path} is not valid:\n" + "\n".join(f"  {p}" for p in iter_problem_lines(exc))


# ---- subcommands --------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    reply: admin_pb2.TopologyFile = _call(
        routing_address(args.routing),
        "GetTopologyFile",
        admin_pb2.GetTopologyFileRequest(),
        mutating=False,
        token=args.token,
    )
    sys.stdout.write(reply.text)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    try:
        t = load_topology_file(args.file)
    except TopologyError as exc:
        raise CommandFailed(_invalid(args.file, exc)) from None
    print(f"{args.file}: valid: {len(t.regions)} regions, {len(t.edges)} edges, {len(t.links)} links")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    dry_run = args.always_dry_run or args.dry_run
    address = routing_address(args.routing)
    request = admin_pb2.ApplyTopologyRequest(
        text=_read(args.file), source_name=str(args.file), dry_run=dry_run, impact=_impact_options(args)
    )
    result: admin_pb2.TopologyChangeResult = _call(
        address, "ApplyTopology", request, mutating=not dry_run, token=args.token
    )
    _print_result(result, args, changed_only=args.changed_only)
    if dry_run:
        if result.changes:
            print(f"dry run: nothing applied (running version {result.version_before})")
    elif result.applied:
        print(
            f"applied: topology version {result.version_before} -> {result.version_after} (change {result.change_id})"
        )
    return 0


def _mutate(args: argparse.Namespace, method: str, request: Any) -> int:
    result: admin_pb2.TopologyChangeResult = _call(
        routing_address(args.routing), method, request, mutating=True, token=args.token
    )
    _print_result(result, args, changed_only=True)
    if result.applied:
        print(
            f"applied: topology version {result.version_before} -> {result.version_after} (change {result.change_id})"
        )
    return 0


def run_edge_state(args: argparse.Namespace) -> int:
    request = admin_pb2.SetEdgeStateRequest(edge_id=args.edge, state=args.edge_state, impact=_impact_options(args))
    return _mutate(args, "SetEdgeState", request)


def run_link(args: argparse.Namespace) -> int:
    if args.rtt is None and args.loss is None and args.up is None:
        raise CommandFailed("nothing to change: give --rtt MS, --loss P, --down or --up")
    request = admin_pb2.SetLinkRequest(a=args.a, b=args.b, impact=_impact_options(args))
    if args.rtt is not None:
        request.rtt_ms = args.rtt
    if args.loss is not None:
        request.loss = args.loss
    if args.up is not None:
        request.up = args.up
    return _mutate(args, "SetLink", request)


def format_log(reply: admin_pb2.ListTopologyChangesResponse) -> list[str]:
    lines = []
    if not reply.durable:
        lines.append("(the routing service has no database: this log is in its memory and ends with it)")
    if not reply.changes:
        lines.append("no topology changes recorded")
    for c in reply.changes:
        when = datetime.fromtimestamp(c.applied_at_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"#{c.change_id}  {when}  {c.actor}  {c.action}  v{c.version_before} -> v{c.version_after}")
        lines += [f"    {line}" for line in c.changes]
    return lines


def run_log(args: argparse.Namespace) -> int:
    reply = _call(
        routing_address(args.routing),
        "ListTopologyChanges",
        admin_pb2.ListTopologyChangesRequest(limit=args.limit),
        mutating=False,
        token=args.token,
    )
    for line in format_log(reply):
        print(line)
    return 0


def run_lint(args: argparse.Namespace) -> int:
    try:
        topology = load_topology_file(args.file)
    except TopologyError as exc:
        raise CommandFailed(_invalid(args.file, exc)) from None
    try:
        report = lint_topology(
            topology,
            budget_ms=args.budget_ms,
            matchmaker_region=args.matchmaker_region or None,
            last_mile_ms=args.last_mile_ms,
        )
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    if args.all:
        print(f"  {'region pair':<36}{'total':>7}{'control':>9}{'backbone':>10}{'last mile':>11}  path")
        for p in report.predictions:
            pair = p.region_a if p.region_a == p.region_b else f"{p.region_a} - {p.region_b}"
            if p.unreachable:
                print(f"  {pair:<36}{'none':>7}  {p.unreachable}")
            else:
                print(
                    f"  {pair:<36}{p.total_ms:>7.0f}{p.control_ms:>9.0f}{p.backbone_ms:>10.0f}{p.access_ms:>11.0f}"
                    f"  {' > '.join(p.path)}"
                )
    worst = report.worst
    where = (
        f"{len(report.predictions)} region pairs, matchmaker in {report.matchmaker_region}, "
        f"budget {report.budget_ms:g} ms"
    )
    if report.ok:
        worst_text = f"; worst {worst.region_a} - {worst.region_b} {worst.total_ms:.0f} ms" if worst else ""
        print(f"{args.file}: within budget: {where}{worst_text}")
        return 0
    lines = "\n".join(f"  {line}" for line in report.failure_lines())
    raise CommandFailed(f"{args.file}: {len(report.failures)} of {where} over budget:\n{lines}")
