"""Finding the machine's PostgreSQL server binaries (initdb, pg_ctl, postgres)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from duet.services.devkit.errors import SetupError

#: Environment variable naming an existing server; when set, no cluster is started.
DATABASE_URL_ENV = "DUET_DATABASE_URL"
#: Where Debian/Ubuntu install the server binaries (not on PATH there). Tests monkeypatch this.
BINARY_GLOBS: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)
REQUIRED_BINARIES: tuple[str, ...] = ("initdb", "pg_ctl", "postgres")


class PostgresNotFound(SetupError):
    """The PostgreSQL server binaries are not installed (or not where we look)."""


@dataclass(frozen=True)
class PostgresBinaries:
    bindir: Path
    major: int
    version: str

    def path(self, name: str) -> str:
        return str(self.bindir / name)


def _server_version(bindir: Path) -> tuple[int, str]:
    # `postgres --version` is answered before the refuse-to-run-as-root check.
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", out)
    if not m:
        raise SetupError(f"cannot tell the PostgreSQL version of {bindir / 'postgres'}: it printed {out.strip()!r}")
    return int(m.group(1)), m.group(0).split()[-1]


def find_binaries(prefer_major: int | None = None) -> PostgresBinaries:
    """Find a directory holding initdb, pg_ctl and postgres.

    PATH first, then the Debian/Ubuntu layout (highest version first). With
    `prefer_major` (the version an existing data dir was made by) a matching
    install wins, since a cluster only opens with its own major version.
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versioned: list[tuple[int, Path]] = []
    for pattern in BINARY_GLOBS:
        for match in glob.glob(pattern):
            m = re.search(r"/(\d+)(?:\.\d+)?/bin/?$", match)
            versioned.append((int(m.group(1)) if m else 0, Path(match)))
    candidates += [d for _, d in sorted(versioned, reverse=True)]

    complete: list[Path] = []
    seen_any: set[str] = set()
    for d in dict.fromkeys(candidates):  # dedupe, keep order
        present = {b for b in REQUIRED_BINARIES if os.access(d / b, os.X_OK)}
        seen_any |= present
        if present == set(REQUIRED_BINARIES):
            complete.append(d)
    if not complete:
        missing = [b for b in REQUIRED_BINARIES if b not in seen_any] or list(REQUIRED_BINARIES)
        where = ", ".join(["PATH", *BINARY_GLOBS])
        raise PostgresNotFound(
            f"PostgreSQL server binaries not found: {', '.join(missing)} (searched {where}). "
            "Install them (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; "
            "macOS: `brew install postgresql`) or set "
            f"{DATABASE_URL_ENV} to an existing server, e.g. postgresql://user@host:5432/duet"
        )
    found = []
    for d in complete:
        major, version = _server_version(d)
        if prefer_major is None or major == prefer_major:
            return PostgresBinaries(d, major, version)
        found.append((d, major, version))
    d, major, version = found[0]
    return PostgresBinaries(d, major, version)


__all__ = ["BINARY_GLOBS", "DATABASE_URL_ENV", "PostgresBinaries", "PostgresNotFound", "find_binaries"]
