"""The edge under test, alone in its process: an EdgeRelay behind the real EdgeControl gRPC servicer.

Started by the benchmark driver instead of ``duet edge`` so that no routing
service (and no PostgreSQL) is needed: the driver hands out edge numbers and
route tables itself, over this process's stdin, one JSON command a line. The
legs, bridges and stats go through EdgeControl gRPC, as in production.
Replies are JSON lines on stdout; logs go to stderr.

Commands: {"cmd": "routes", "version": V, "entries": [[dest_id, dest_number, next_hop_id, host, port], ...]},
{"cmd": "decodes"}, {"cmd": "pauses"} (since the last ask: the collector's pauses in ms, and the event loop's
stalls as [ms late, ms of CPU used meanwhile]), {"cmd": "profile_start"},
{"cmd": "profile_stop", "path": P}.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import signal
import sys
from typing import Any

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from bench.edge.child_pauses import ChildPauses, serve_commands
from bench.edge.decodes import decoders_created, install_decode_counter
from duet.edge.backbone import RouteEntry
from duet.edge.ice_hosts import restrict_ice_to
from duet.edge.relay import EdgeRelay
from duet.services.edge_server.server import EdgeControlServicer
from duet.services.rpc.server import start_server
from duet.v1 import edge_pb2_grpc

HOST = "127.0.0.1"
CLUSTER_KEY = b"bench-cluster-key"


def _reply(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _handle(
    node: EdgeRelay, command: dict[str, Any], profiler: list[cProfile.Profile], pauses: ChildPauses
) -> dict[str, object]:
    cmd = command.get("cmd")
    if cmd == "routes":
        entries = [RouteEntry(str(e[0]), int(e[1]), str(e[2]), (str(e[3]), int(e[4])), 1.0) for e in command["entries"]]
        node.set_routes(int(command["version"]), entries)
        return {"ok": True}
    if cmd == "decodes":
        return {"decodes": decoders_created()}
    if cmd == "pauses":
        return pauses.reply()
    if cmd == "profile_start":
        profiler.append(cProfile.Profile())
        profiler[-1].enable()
        return {"ok": True}
    if cmd == "profile_stop":
        if not profiler:
            return {"error": "no profile is running"}
        prof = profiler.pop()
        prof.disable()
        prof.dump_stats(str(command["path"]))
        return {"ok": True}
    return {"error": f"unknown command {cmd!r}"}


async def serve(edge_id: str, number: int) -> None:
    install_decode_counter()
    restrict_ice_to([HOST])
    node = EdgeRelay(edge_id, number, CLUSTER_KEY)
    backbone = await node.start(HOST, 0)
    server, control = await start_server(
        f"{HOST}:0", lambda s: edge_pb2_grpc.add_EdgeControlServicer_to_server(EdgeControlServicer(node), s)
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _reply({"ready": True, "pid": os.getpid(), "control": control, "backbone": list(backbone)})
    profiler: list[cProfile.Profile] = []

    async def commands(pauses: ChildPauses) -> None:
        while line := await reader.readline():
            try:
                result = _handle(node, json.loads(line), profiler, pauses)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                result = {"error": f"bad command: {exc}"}
            _reply(result)
        stop.set()  # the driver went away: stdin closed

    try:
        await serve_commands(commands, stop)
    finally:
        await server.stop(grace=0.5)
        await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge-id", required=True)
    parser.add_argument("--number", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    asyncio.run(serve(args.edge_id, args.number))


if __name__ == "__main__":
    main()
