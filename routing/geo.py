"""Client address -> location, with geoip2 over a GeoIP2/GeoLite2 City mmdb file.

Addresses that cannot be geolocated (loopback, private, link-local, ...) are
answered without touching the database, and every answer says why it has or
lacks a location, so the ingress choice can report its fallback reason.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import geoip2.database
import geoip2.errors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DatabasePath = str | os.PathLike[str]

# LocateResult.reason values.
GEOIP = "geoip"
LOOPBACK = "loopback"
PRIVATE = "private address"
LINK_LOCAL = "link-local address"
UNSPECIFIED = "unspecified address"
MULTICAST = "multicast address"
RESERVED = "reserved address"  # not globally routable for another reason (CGNAT, benchmarking, ...)
NOT_IN_DATABASE = "not in database"
NO_DATABASE = "no geoip database"
INVALID = "invalid address"


@dataclass(frozen=True)
class Location:
    lat: float
    lon: float
    country: str | None = None  # ISO 3166-1 alpha-2
    city: str | None = None


@dataclass(frozen=True)
class LocateResult:
    location: Location | None
    reason: str  # GEOIP when located, else why not (one of the constants above)


def parse_ip(s: str) -> IPAddress:
    """Parse an IPv4/IPv6 literal; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4.

    Raises ``ValueError("'x' is not an IPv4 or IPv6 address")`` (for RPC validation).
    """
    try:
        ip = ipaddress.ip_address(s.strip() if isinstance(s, str) else s)
    except ValueError:
        raise ValueError(f"{s!r} is not an IPv4 or IPv6 address") from None
    # Dual-stack listeners report IPv4 clients as ::ffff:a.b.c.d; classify and
    # look them up as the IPv4 address they are.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def non_public_reason(ip: IPAddress) -> str | None:
    """Why an address cannot be geolocated, or None for a global unicast address."""
    # Order matters: loopback/link-local/unspecified are also "private" to ipaddress.
    if ip.is_loopback:
        return LOOPBACK
    if ip.is_unspecified:
        return UNSPECIFIED
    if ip.is_link_local:
        return LINK_LOCAL
    if ip.is_multicast:
        return MULTICAST
    if ip.is_private:
        return PRIVATE
    if not ip.is_global:
        return RESERVED
    return None


class GeoLocator:
    """Locates client addresses with GeoIP2-City-compatible mmdb files.

    ``paths`` is one database, several (asked in order: the first that knows
    the address answers, so a small overlay such as the demo database can sit
    in front of a world-wide one), or None: public addresses then come back
    with reason ``NO_DATABASE`` (the ingress choice falls back). Use as a
    context manager or call ``close()``. The geoip2 reader is thread-safe and
    memory-maps the file, so one locator serves a process.
    """

    def __init__(self, paths: DatabasePath | Sequence[DatabasePath] | None):
        if paths is None:
            paths = []
        elif isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        self._readers: list[geoip2.database.Reader] = []
        self._closed = False
        try:
            for path in self.paths:
                self._readers.append(_open_city_database(path))
        except BaseException:
            self.close()
            raise

    def locate(self, ip: str | IPAddress) -> LocateResult:
        """Where an address is, or why we cannot tell (never raises for bad input)."""
        if self._closed:
            raise RuntimeError("GeoLocator is closed")
        try:
            addr = parse_ip(ip) if isinstance(ip, str) else ip
        except ValueError:
            return LocateResult(None, INVALID)
        why_not = non_public_reason(addr)
        if why_not is not None:
            return LocateResult(None, why_not)
        if not self._readers:
            return LocateResult(None, NO_DATABASE)
        for reader in self._readers:
            try:
                rec = reader.city(addr)
            except geoip2.errors.AddressNotFoundError:
                continue
            lat, lon = rec.location.latitude, rec.location.longitude
            if lat is None or lon is None:
                # Some records only know the country; without coordinates we cannot
                # estimate latency, so ask the next database or treat it as unknown.
                continue
            return LocateResult(Location(lat, lon, rec.country.iso_code, rec.city.name), GEOIP)
        return LocateResult(None, NOT_IN_DATABASE)

    def close(self) -> None:
        self._closed = True
        for reader in self._readers:
            reader.close()
        self._readers = []

    def __enter__(self) -> GeoLocator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_city_database(path: str) -> geoip2.database.Reader:
    reader = geoip2.database.Reader(path)
    db_type = reader.metadata().database_type
    if "City" not in db_type:
        reader.close()
        raise ValueError(f"{path!r} is a {db_type!r} database; a City database is needed")
    return reader
