"""WAN emulation for tests and benchmarks: delay, jitter and loss in user space.

Off by default. The datagram part shapes the backbone between edges and the
client legs at the edge (``edge.py``); ``profile.py`` holds what is applied
and reads ``$DUET_WAN``; ``shaper.py`` does the shaping. The control plane
(gRPC between the matchmaker's region and clients and edges elsewhere) goes
through ``delay_proxy.py``, a TCP proxy that delays each direction. See docs/architecture.md,
"WAN emulation (test facility)".
"""

from duet.services.devkit.wan.delay_proxy import ProxyCounters, TcpDelayProxy
from duet.services.devkit.wan.profile import (
    DEFAULT_LAST_MILE_MS,
    ENV_VAR,
    ControlPlane,
    LinkProfile,
    WanConfig,
    backbone_from_topology,
)
from duet.services.devkit.wan.shaper import EmulatedDatagramTransport, LinkCounters, LinkSet, LinkShaper

__all__ = [
    "DEFAULT_LAST_MILE_MS",
    "ENV_VAR",
    "ControlPlane",
    "EmulatedDatagramTransport",
    "LinkCounters",
    "LinkProfile",
    "LinkSet",
    "LinkShaper",
    "ProxyCounters",
    "TcpDelayProxy",
    "WanConfig",
    "backbone_from_topology",
]
