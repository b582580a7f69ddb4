"""SYNTHETIC geolocation for local demos and tests. Not real geolocation data.

Each shipped region gets one made-up client address, and ``write_demo_mmdb``
writes a small GeoIP2-City-compatible database that places that address's /24
at the region's datacenter city. The addresses are ordinary global unicast
addresses chosen only to be distinct (one per /16) and publicly routable
(``ipaddress`` says ``is_global``), so the geoip path is exercised exactly as
in production; whatever they really belong to is irrelevant here. Never ship
this database as a real one.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

from duet.routing.reference import region_sites

DEMO_DATABASE_TYPE = "GeoIP2-City"  # geoip2's Reader.city() requires "City" in the type

# One synthetic client address per shipped region (keys match regions.json).
DEMO_CLIENT_IPS: dict[str, str] = {
    "Tokyo": "61.200.7.10",
    "Seoul": "175.223.7.10",
    "HongKong": "103.252.7.10",
    "Singapore": "119.73.7.10",
    "Pune(~Mumbai)": "117.198.7.10",
    "Dubai": "94.200.7.10",
    "Frankfurt": "85.214.7.10",
    "London": "81.2.69.10",
    "Virginia": "52.4.7.10",
    "Washington(WUS2)": "50.35.7.10",
    "SaoPaulo": "177.70.7.10",
    "Sydney": "101.160.7.10",
    "Johannesburg": "105.224.7.10",
}


def demo_network(region: str) -> ipaddress.IPv4Network:
    """The synthetic /24 that the demo database places in ``region``."""
    return ipaddress.IPv4Network(f"{DEMO_CLIENT_IPS[region]}/24", strict=False)


def write_demo_mmdb(path: str | os.PathLike[str], regions: Iterable[str] | None = None) -> Path:
    """Write the synthetic demo City database to ``path`` and return it.

    ``regions`` limits it to some shipped regions (default: all 13); an
    unknown name raises ``ValueError``. Each /24 carries location
    (lat/lon, accuracy radius), country (ISO code, English name), continent
    code and city name, like a GeoIP2/GeoLite2 City record. The database is
    IPv6 with IPv4 mapped in (as the real ones are), so geoip2 answers both.
    """
    sites = region_sites()
    names = list(DEMO_CLIENT_IPS) if regions is None else list(regions)
    unknown = [n for n in names if n not in DEMO_CLIENT_IPS]
    if unknown:
        raise ValueError(f"no demo address for region(s) {unknown}; known: {', '.join(DEMO_CLIENT_IPS)}")

    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=DEMO_DATABASE_TYPE,
        languages=["en"],
        description="Duet SYNTHETIC demo geolocation (made-up data for demos and tests, not real)",
    )
    for name in names:
        site = sites[name]
        writer.insert_network(
            IPSet([str(demo_network(name))]),
            {
                "city": {"names": {"en": site.city}},
                "continent": {"code": site.continent},
                "country": {"iso_code": site.country, "names": {"en": site.country_name}},
                "location": {
                    "latitude": float(site.lat),
                    "longitude": float(site.lon),
                    "accuracy_radius": 50,
                },
            },
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(os.fspath(out))
    return out
