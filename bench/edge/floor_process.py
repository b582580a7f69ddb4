"""The floor: the least work any Python edge must do per packet, in a bare asyncio loop.

Receive a UDP datagram, SRTP-unprotect it with the sender's session, SRTP-protect
it with the receiver's, send it on; or, for a pair given no keys, only receive and send. Same libraries as aiortc (asyncio datagram endpoints, pylibsrtp,
the SRTP profile two aiortc peers negotiate). Controlled like the bench edge:
JSON lines on stdin ({"cmd": "pair", "a": [host, port, rx_key_hex, tx_key_hex],
"b": [...]}: forward a's packets to b and b's to a; {"cmd": "stats"}: packets dropped; {"cmd": "pauses"}: since
the last ask, the collector's pauses in ms and the event loop's stalls as [ms late, ms of CPU used meanwhile]),
replies on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import cast

from aiortc.rtcdtlstransport import SRTP_PROFILES
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from bench.edge.child_pauses import ChildPauses, serve_commands

HOST = "127.0.0.1"
# What two aiortc peers agree on (aiortc's first profile): the floor uses the same cipher as the edge's legs.
SRTP_PROFILE = SRTP_PROFILES[0]
SRTP_KEY_BYTES = SRTP_PROFILE.key_length + SRTP_PROFILE.salt_length


def srtp_session(key: bytes, inbound: bool) -> Session:
    return Session(
        Policy(
            key=key,
            ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=SRTP_PROFILE.libsrtp_profile,
        )
    )


@dataclass
class _Leg:
    address: tuple[str, int]
    rx: Session | None  # unprotects what this leg's client sends
    tx: Session | None  # protects what goes to this leg's client
    peer: _Leg | None = None


class FloorForwarder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.legs: dict[tuple[str, int], _Leg] = {}
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        leg = self.legs.get(addr)
        if leg is None or leg.peer is None or self.transport is None:
            self.dropped += 1
            return
        peer = leg.peer
        if leg.rx is not None and peer.tx is not None:
            try:
                data = peer.tx.protect(leg.rx.unprotect(data))
            except SrtpError:
                self.dropped += 1
                return
        self.transport.sendto(data, peer.address)

    def pair(self, a: list[str], b: list[str]) -> None:
        legs = [
            _Leg(
                (str(spec[0]), int(spec[1])),
                srtp_session(bytes.fromhex(spec[2]), inbound=True) if spec[2] else None,
                srtp_session(bytes.fromhex(spec[3]), inbound=False) if spec[3] else None,
            )
            for spec in (a, b)
        ]
        legs[0].peer, legs[1].peer = legs[1], legs[0]
        for leg in legs:
            self.legs[leg.address] = leg


async def serve() -> None:
    loop = asyncio.get_running_loop()
    transport, forwarder = await loop.create_datagram_endpoint(FloorForwarder, local_addr=(HOST, 0))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = transport.get_extra_info("sockname")[1]
    print(json.dumps({"ready": True, "pid": os.getpid(), "port": port}), flush=True)

    async def commands(pauses: ChildPauses) -> None:
        while line := await reader.readline():
            try:
                command = json.loads(line)
                if command.get("cmd") == "pair":
                    forwarder.pair(command["a"], command["b"])
                    reply: dict[str, object] = {"ok": True}
                elif command.get("cmd") == "stats":
                    reply = {"dropped": forwarder.dropped}
                elif command.get("cmd") == "pauses":
                    reply = pauses.reply()
                else:
                    reply = {"error": f"unknown command {command.get('cmd')!r}"}
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                reply = {"error": f"bad command: {exc}"}
            print(json.dumps(reply), flush=True)
        stop.set()

    try:
        await serve_commands(commands, stop)
    finally:
        transport.close()


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
