"""Follow a ``$DUET_WAN`` file: an edge re-reads it when it changes (test facility).

Lets a test change the emulated backbone of running edge processes, e.g.
drop every datagram on one link mid-call: write the new JSON to the file
(atomically: write a temporary file and rename it over) and each edge
applies it within ``POLL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from duet.services.devkit.wan.edge import EdgeEmulation
from duet.services.devkit.wan.profile import ENV_VAR, WanConfig

logger = logging.getLogger("duet.devkit.wan")

POLL_S = 0.1


def wan_file_from_env() -> Path | None:
    """The file ``$DUET_WAN`` names, or None when it is unset or inline JSON."""
    raw = os.environ.get(ENV_VAR, "").strip()
    return Path(raw) if raw and not raw.startswith("{") else None


async def follow_wan_file(emulation: EdgeEmulation, path: Path) -> None:
    """Reload ``path`` into ``emulation`` whenever its modification time changes; runs until cancelled."""
    seen = await _mtime(path)
    while True:
        await asyncio.sleep(POLL_S)
        mtime = await _mtime(path)
        if mtime is None:
            continue
        if mtime == seen:
            continue
        seen = mtime
        try:
            config = await asyncio.to_thread(WanConfig.from_env, {ENV_VAR: str(path)})
        except ValueError as exc:
            logger.warning("edge %s: WAN emulation file changed but not applied: %s", emulation.edge_id, exc)
            continue
        emulation.reload(config)
        logger.warning("edge %s: WAN emulation reloaded from %s", emulation.edge_id, path)


async def _mtime(path: Path) -> int | None:
    try:
        return (await asyncio.to_thread(path.stat)).st_mtime_ns
    except OSError:
        return None
