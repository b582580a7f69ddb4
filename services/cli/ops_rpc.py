"""What the ops commands share about the matchmaker they call: its address, their arguments, a refused RPC in words."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import grpc

from duet.services.cli.ops_credentials import STATE_DIR
from duet.services.devkit.local_cluster import running_cluster_address
from duet.services.matchmaker.user_id import USER_ID_RE

MATCHMAKER_ENV = "DUET_MATCHMAKER"
DEFAULT_MATCHMAKER = "127.0.0.1:50052"


class CommandFailed(Exception):
    """What went wrong, in words, for the person at the terminal."""


def matchmaker_address(given: str | None) -> str:
    """``--matchmaker``, else $DUET_MATCHMAKER, else a local cluster's from ./.duet, else the default."""
    if given:
        return given
    return os.environ.get(MATCHMAKER_ENV) or running_cluster_address(STATE_DIR, "matchmaker") or DEFAULT_MATCHMAKER


def user_id_arg(value: str) -> str:
    """An argparse type: a user id as the matchmaker accepts it."""
    if not USER_ID_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"'{value}' is not a user id (1-64 letters, digits, '_', '.' or '-')")
    return value


def count_arg(most: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``most`` (``what``: "calls" in the message)."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if not 1 <= n <= most:
            of = f" of {what}" if what else ""
            raise argparse.ArgumentTypeError(f"'{value}' is not a number{of} from 1 to {most}")
        return n

    return parse


def rpc_failed(exc: grpc.RpcError, address: str, rpc: str, role: str) -> CommandFailed:
    """A failed call to the matchmaker's ``rpc`` (which needs an ops token of ``role``), in words."""
    code: grpc.StatusCode = exc.code()
    details = exc.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE:
        return CommandFailed(
            f"cannot reach the matchmaker at {address} ({details}); is it running? "
            "Give its address with --matchmaker ADDRESS"
        )
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return CommandFailed(f"not signed in: {details}")
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return CommandFailed(f"not allowed: {details} ({rpc} needs a token with role {role})")
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return CommandFailed(f"the service at {address} has no {rpc} (is it a matchmaker?)")
    return CommandFailed(details or f"{rpc} failed ({code.name})")
