"""The greeter bot of ``duet up``: a simulated user who waits in the pool so that
``duet call`` (or any client) finds a partner, call after call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo
from duet.services.devkit.synthetic_media import synthetic_client

logger = logging.getLogger("duet.greeter")


async def serve_forever(info: ClusterInfo, regions: Sequence[str], *, stop: asyncio.Event, bot: bool = True) -> None:
    """Serve until ``stop``; a greeter bot waits in the pool so `duet call` finds someone."""
    print(f"\nserving: matchmaker at {info.matchmaker} (Ctrl-C to stop)")
    task = None
    if bot:
        print(
            f"a greeter bot is waiting; in another terminal: .venv/bin/duet call --matchmaker {info.matchmaker}",
            flush=True,
        )
        task = asyncio.create_task(greet_forever(info, regions))
    try:
        await stop.wait()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def greet_forever(info: ClusterInfo, regions: Sequence[str]) -> None:
    client = synthetic_client(
        info.matchmaker,
        "greeter-bot",
        "greeter bot",
        tag=999,
        client_ip=DEMO_CLIENT_IPS[regions[-1]],
        frame_timeout=15.0,
    )
    try:
        await client.connect()
        while True:
            try:
                result = await client.find_partner()
                logger.info(
                    "greeter bot connected to %s in %.1f ms", result.partner_display_name, result.connect_ms or -1
                )
                await client.wait_call_ended()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a guest who leaves early is normal here
                logger.info("greeter bot: %s", exc)
                await asyncio.sleep(0.2)
    finally:
        await client.leave()
