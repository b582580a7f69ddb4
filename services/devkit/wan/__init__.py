"""WAN emulation for tests and benchmarks: delay, jitter and loss in user space.

Off by default. The datagram part shapes the backbone between edges and the
client legs at the edge (``edge.py``); ``profile.py`` holds what is applied
and reads ``$DUET_WAN``; ``shaper.py`` does the shaping. A control-plane part
(delaying gRPC between regions) belongs beside them. See docs/architecture.md,
"WAN emulation (test facility)".
"""

from duet.services.devkit.wan.profile import (
    DEFAULT_LAST_MILE_MS,
    ENV_VAR,
    LinkProfile,
    WanConfig,
    backbone_from_topology,
)
from duet.services.devkit.wan.shaper import EmulatedDatagramTransport, LinkCounters, LinkSet, LinkShaper

__all__ = [
    "DEFAULT_LAST_MILE_MS",
    "ENV_VAR",
    "EmulatedDatagramTransport",
    "LinkCounters",
    "LinkProfile",
    "LinkSet",
    "LinkShaper",
    "WanConfig",
    "backbone_from_topology",
]
