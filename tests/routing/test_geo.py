from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from duet.routing.geo import GeoLocator, LocateResult, Location, parse_ip
from duet.routing.ingress import pick_ingress
from duet.routing.reference import region_sites
from duet.routing.topology import default_topology, world_topology
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS, demo_network, write_demo_mmdb


@pytest.fixture(scope="module")
def demo_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_mmdb(tmp_path_factory.mktemp("geo") / "demo-city.mmdb")


@pytest.fixture
def locator(demo_mmdb: Path):
    with GeoLocator(demo_mmdb) as loc:
        yield loc


# ---- parse_ip -------------------------------------------------------------------


def test_parse_ip() -> None:
    assert parse_ip("119.73.7.10") == ipaddress.IPv4Address("119.73.7.10")
    assert parse_ip(" 2001:4860::8888 ") == ipaddress.IPv6Address("2001:4860::8888")
    assert parse_ip("::ffff:119.73.7.10") == ipaddress.IPv4Address("119.73.7.10")
    for bad in ["", "example.com", "1.2.3.4.5", "300.1.1.1", "1.2.3.4/24"]:
        with pytest.raises(ValueError, match=f"'{bad}' is not an IPv4 or IPv6 address"):
            parse_ip(bad)


# ---- demo data ------------------------------------------------------------------


def test_demo_ips_are_global_distinct_and_cover_every_region() -> None:
    assert list(DEMO_CLIENT_IPS) == list(region_sites())
    addrs = [ipaddress.IPv4Address(ip) for ip in DEMO_CLIENT_IPS.values()]
    assert all(a.is_global for a in addrs)
    assert len({ipaddress.ip_network(f"{a}/16", strict=False) for a in addrs}) == 13
    assert all(a in demo_network(r) for r, a in zip(DEMO_CLIENT_IPS, addrs, strict=True))


def test_write_demo_mmdb_rejects_unknown_region(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no demo address for region"):
        write_demo_mmdb(tmp_path / "x.mmdb", regions=["Atlantis"])


def test_write_demo_mmdb_subset(tmp_path: Path) -> None:
    path = write_demo_mmdb(tmp_path / "sub" / "x.mmdb", regions=["Sydney"])
    with GeoLocator(path) as loc:
        assert loc.locate(DEMO_CLIENT_IPS["Sydney"]).location.city == "Sydney"
        assert loc.locate(DEMO_CLIENT_IPS["Tokyo"]).reason == "not in database"


# ---- locate ---------------------------------------------------------------------


@pytest.mark.parametrize("region", list(DEMO_CLIENT_IPS))
def test_every_demo_ip_locates_to_its_region(locator: GeoLocator, region: str) -> None:
    site = region_sites()[region]
    # Any address in the region's /24 is there, not just the listed one.
    other = str(demo_network(region).network_address + 200)
    for ip in (DEMO_CLIENT_IPS[region], other):
        result = locator.locate(ip)
        assert result.reason == "geoip"
        assert result.location == Location(pytest.approx(site.lat), pytest.approx(site.lon), site.country, site.city)


def test_ipv4_mapped_ipv6_is_located_as_ipv4(locator: GeoLocator) -> None:
    result = locator.locate(f"::ffff:{DEMO_CLIENT_IPS['Dubai']}")
    assert result.reason == "geoip" and result.location.country == "AE"


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private address"),
        ("192.168.0.7", "private address"),
        ("fd00::1", "private address"),
        ("169.254.1.1", "link-local address"),
        ("fe80::1", "link-local address"),
        ("0.0.0.0", "unspecified address"),
        ("::", "unspecified address"),
        ("224.0.0.1", "multicast address"),
        ("100.64.0.1", "reserved address"),  # carrier-grade NAT
        ("8.8.8.8", "not in database"),
        ("2a00:1450::1", "not in database"),
        ("not-an-ip", "invalid address"),
        ("", "invalid address"),
    ],
)
def test_locate_reasons(locator: GeoLocator, ip: str, reason: str) -> None:
    assert locator.locate(ip) == LocateResult(None, reason)


def test_non_public_addresses_never_reach_the_database() -> None:
    # Without a database, public addresses say so, while non-public ones are
    # classified before any lookup would happen.
    loc = GeoLocator(None)
    assert loc.locate("127.0.0.1").reason == "loopback"
    assert loc.locate("10.1.2.3").reason == "private address"
    assert loc.locate(DEMO_CLIENT_IPS["Tokyo"]).reason == "no geoip database"


def test_closed_locator_refuses(demo_mmdb: Path) -> None:
    loc = GeoLocator(demo_mmdb)
    loc.close()
    loc.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        loc.locate(DEMO_CLIENT_IPS["Tokyo"])


def test_non_city_database_is_rejected(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=4, database_type="GeoIP2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))
    with pytest.raises(ValueError, match="City database is needed"):
        GeoLocator(path)


# ---- with ingress ---------------------------------------------------------------


def test_singapore_demo_ip_picks_the_singapore_edge(locator: GeoLocator) -> None:
    choice = pick_ingress(default_topology(), locator.locate(DEMO_CLIENT_IPS["Singapore"]), default_region="Frankfurt")
    assert choice.edge.edge_id == "sin-1"
    assert choice.client_region == "Singapore"
    assert choice.reason.startswith("geoip")


@pytest.mark.parametrize("region", list(DEMO_CLIENT_IPS))
def test_every_demo_ip_picks_its_own_region_in_the_world(locator: GeoLocator, region: str) -> None:
    choice = pick_ingress(world_topology(), locator.locate(DEMO_CLIENT_IPS[region]), default_region="Frankfurt")
    assert choice.edge.region == region and choice.client_region == region


@pytest.mark.parametrize(("ip", "why"), [("127.0.0.1", "loopback"), ("10.1.2.3", "private address")])
def test_local_addresses_fall_back_to_the_default_region(locator: GeoLocator, ip: str, why: str) -> None:
    choice = pick_ingress(default_topology(), locator.locate(ip), default_region="Virginia")
    assert choice.edge.edge_id == "vir-1"
    assert choice.client_region == "Virginia"
    assert choice.reason.startswith(f"fallback: {why}")
    assert "Virginia" in choice.reason
