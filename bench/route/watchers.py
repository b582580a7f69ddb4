"""Child process of make bench-route: one WatchRoutes stream per edge, as the edges hold them.

Each stream asks for deltas (unless the first argument after the address and
token is ``whole``), and each message is applied to the table the stream
holds: a whole table replaces it, a delta updates it, and one that does not
fit (its size does not add up) stops the run. Prints ``held EDGE VERSION
MONOTONIC_S`` once a message is applied (the monotonic clock is the
machine's, shared with the parent) and ``ready`` once every edge holds its
first table. Runs until stdin closes. Watchers live in their own process so
that parsing 500 tables does not slow the server being measured. The table
is held as the messages' entries; turning them into an edge's RouteEntry
objects (``services/edge_server/route_watch.py``, ~0.8 ms for 499 entries)
happens on every edge in parallel in a real backbone, so it is left out
rather than run 500 times in a row here.
"""

from __future__ import annotations

import asyncio
import sys
import time

import grpc

from duet.v1 import routing_pb2, routing_pb2_grpc

STREAMS_PER_CHANNEL = 50  # well under HTTP/2's usual 100 concurrent streams per connection


async def watch(
    stub: routing_pb2_grpc.RoutingStub,
    edge_id: str,
    first: asyncio.Event,
    metadata: tuple[tuple[str, str], ...],
    deltas: bool,
) -> None:
    held: dict[str, routing_pb2.NextHop] = {}
    request = routing_pb2.WatchRoutesRequest(edge_id=edge_id, deltas=deltas)
    async for table in stub.WatchRoutes(request, metadata=metadata):
        if not table.delta:
            held = {e.dest_edge_id: e for e in table.entries}
        else:
            for dest in table.removed_dest_edge_ids:
                del held[dest]
            held.update((e.dest_edge_id, e) for e in table.entries)
            if len(held) != table.table_size:
                raise SystemExit(
                    f"{edge_id}: a delta left {len(held)} destinations, the server holds {table.table_size}"
                )
        print(f"held {edge_id} {table.version} {time.monotonic():.6f}", flush=False)
        first.set()


async def main(address: str, edge_ids: list[str], token: str, deltas: bool) -> None:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    channels = [grpc.aio.insecure_channel(address) for _ in range(0, len(edge_ids), STREAMS_PER_CHANNEL)]
    firsts = [asyncio.Event() for _ in edge_ids]
    tasks = [
        asyncio.create_task(
            watch(
                routing_pb2_grpc.RoutingStub(channels[i // STREAMS_PER_CHANNEL]), edge_id, firsts[i], metadata, deltas
            )
        )
        for i, edge_id in enumerate(edge_ids)
    ]
    await asyncio.gather(*(f.wait() for f in firsts))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    flusher = asyncio.create_task(flush_often())
    await loop.run_in_executor(None, sys.stdin.read)  # the parent closes stdin to stop us
    for task in (*tasks, flusher):
        task.cancel()
    await asyncio.gather(*tasks, flusher, return_exceptions=True)
    for channel in channels:
        await channel.close()


async def flush_often() -> None:
    while True:
        await asyncio.sleep(0.02)
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[4:], sys.argv[2], deltas=sys.argv[3] != "whole"))
