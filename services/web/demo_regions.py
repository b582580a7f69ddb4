"""Which client address the gateway forwards for a browser that asks for a demo region.

In the local cluster the matchmaker trusts ``x-forwarded-for`` and the routing
service locates clients with the synthetic demo GeoIP database, which places
one made-up /24 in each region (``duet.services.devkit.demo_geo``). Forwarding
a region's demo address instead of the browser's own (loopback) one puts that
browser on the region's edge, so two tabs on one machine can call across the
backbone. Only for demos and tests: a real deployment forwards real addresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from duet.routing.reference import region_sites
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS

__all__ = ["DemoRegion", "DemoRegions", "UnknownRegion"]


class UnknownRegion(ValueError):
    """The browser asked for a region this gateway cannot place it in; the message says which exist."""


@dataclass(frozen=True)
class DemoRegion:
    code: str  # the region's edge prefix, e.g. "sin" (edges are sin-1, ...)
    name: str  # the region's name in the topology, e.g. "Singapore"
    address: str  # the synthetic client address the demo database places there


class DemoRegions:
    """The demo regions a gateway offers, by code or name."""

    def __init__(self, names: Iterable[str]) -> None:
        sites = region_sites()
        regions: list[DemoRegion] = []
        for name in names:
            if name not in sites or name not in DEMO_CLIENT_IPS:
                raise UnknownRegion(f"no demo address for region {name!r}; known: {', '.join(DEMO_CLIENT_IPS)}")
            regions.append(DemoRegion(sites[name].edge_prefix, name, DEMO_CLIENT_IPS[name]))
        self.regions = tuple(regions)

    def address_for(self, asked: str) -> str:
        """The demo address of the region asked for by code ("sin") or name ("Singapore")."""
        for region in self.regions:
            if asked in (region.code, region.name):
                return region.address
        offered = ", ".join(f"{r.code} ({r.name})" for r in self.regions) or "none"
        raise UnknownRegion(f"unknown region {asked!r}: this gateway offers {offered}")

    def __bool__(self) -> bool:
        return bool(self.regions)
