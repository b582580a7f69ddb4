"""WAN emulation of a whole local cluster: what its edges are told and the clients' proxies.

The world runs on one machine: every edge emulates its backbone links (RTT / 2
each way from the topology), its client legs (a last mile each way) and its
control traffic with the matchmaker's region (:mod:`.edge`); the clients'
Session streams reach the matchmaker through one :class:`TcpDelayProxy` per
client region, delayed by that region's one-way delay plus the last mile.
The supervisor that starts the cluster owns those proxies. A test and
benchmark facility, off unless asked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from duet.routing.topology import Topology
from duet.services.devkit.wan.delay_proxy import TcpDelayProxy
from duet.services.devkit.wan.profile import DEFAULT_LAST_MILE_MS, ControlPlane, LinkProfile

__all__ = ["DEFAULT_CONTROL_REGION", "ClusterEmulation", "client_proxies"]

logger = logging.getLogger("duet.devkit.wan")

# Central between Asia, Europe and the Americas: the worst one-way delay from
# Frankfurt to a shipped region is among the smallest (Sydney, 243 ms RTT).
DEFAULT_CONTROL_REGION = "Frankfurt"


@dataclass(frozen=True)
class ClusterEmulation:
    """How a local cluster emulates the WAN: where the control plane is, the last mile, jitter."""

    control_region: str = DEFAULT_CONTROL_REGION
    last_mile_ms: float = DEFAULT_LAST_MILE_MS
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        LinkProfile(delay_ms=self.last_mile_ms, jitter_ms=self.jitter_ms)  # the same checks as any profile

    def control_plane(self, topology: Topology) -> ControlPlane:
        """Raises ValueError (saying why) when the control region is not one of the topology's."""
        return ControlPlane(self.control_region, topology, self.jitter_ms)

    def edge_env(self, topology_path: Path) -> str:
        """``$DUET_WAN`` for the cluster's edges (the topology file they are all declared in)."""
        jitter = {"jitter_ms": self.jitter_ms} if self.jitter_ms else {}
        return json.dumps(
            {
                "backbone": {"topology": str(topology_path), **jitter},
                "legs": {"delay_ms": self.last_mile_ms, **jitter},
                "control": {"region": self.control_region, "topology": str(topology_path), **jitter},
            }
        )


@contextlib.asynccontextmanager
async def client_proxies(
    emulation: ClusterEmulation, topology: Topology, matchmaker: str, regions: Iterable[str]
) -> AsyncIterator[dict[str, str]]:
    """One delay proxy to the matchmaker per client region; yields region -> address to dial."""
    control = emulation.control_plane(topology)
    async with contextlib.AsyncExitStack() as stack:
        addresses: dict[str, str] = {}
        for region in regions:
            profile = control.to_region(region, extra_ms=emulation.last_mile_ms)
            proxy = TcpDelayProxy(matchmaker, profile, name=f"{region} clients -> matchmaker")
            addresses[region] = await stack.enter_async_context(proxy)
        logger.info(
            "client control plane emulated: matchmaker in %s, %d regions' proxies", control.region, len(addresses)
        )
        yield addresses
