"""A private local PostgreSQL cluster for development and tests.

With no database URL given, the services and the tests start their own cluster
from the machine's PostgreSQL server binaries (initdb, pg_ctl, postgres) in a
project-local data folder, on a free loopback port. Nothing here is meant for
production data: the cluster trusts every local TCP connection and runs with
crash-safety settings turned off for speed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import glob
import logging
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

logger = logging.getLogger("duet.db")

#: Environment variable naming an existing server; when set, no cluster is started.
DATABASE_URL_ENV = "DUET_DATABASE_URL"
#: Where Debian/Ubuntu install the server binaries (not on PATH there). Tests monkeypatch this.
BINARY_GLOBS: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)
REQUIRED_BINARIES: tuple[str, ...] = ("initdb", "pg_ctl", "postgres")
#: Cluster superuser and the database the services use.
SUPERUSER = "duet"
DATABASE = "duet"
#: System user created to run the server when we are root and no `postgres` user exists.
FALLBACK_SERVICE_USER = "duetpg"
START_TIMEOUT_S = 60

# Appended to postgresql.conf right after initdb. Dev/test settings: no fsync
# and no full-page writes trade safety against an OS crash or power loss (the
# cluster holds only throwaway data) for speed. synchronous_commit stays on, so
# a killed server still keeps every committed transaction.
_DEV_SETTINGS = """
# --- added by duet (services/db/embedded.py): throwaway dev/test cluster ---
fsync = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 200
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
"""

_PG_ENV_VARS = ("PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGDATABASE", "PGOPTIONS", "PGPASSWORD", "PGSERVICE")

T = TypeVar("T")


class PostgresNotFound(RuntimeError):
    """The PostgreSQL server binaries are not installed (or not where we look)."""


@dataclass(frozen=True)
class PostgresBinaries:
    bindir: Path
    major: int
    version: str

    def path(self, name: str) -> str:
        return str(self.bindir / name)


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account the server runs under when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _server_version(bindir: Path) -> tuple[int, str]:
    # `postgres --version` is answered before the refuse-to-run-as-root check.
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", out)
    if not m:
        raise RuntimeError(f"cannot tell the PostgreSQL version of {bindir / 'postgres'}: {out.strip()!r}")
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


def free_port() -> int:
    """A currently free loopback TCP port (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_scratch_dir(prefix: str = "duet-pg-") -> Path:
    """A fresh temporary directory the server account can traverse.

    As root the server runs as another user, and pytest's own tmp dirs
    (/tmp/pytest-of-root, mode 0700) are closed to it; this one is mode 0711.
    The caller removes it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # start() is synchronous; run the short asyncpg step on a private loop, in
    # another thread if this one already runs a loop.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(lambda: asyncio.run(make())).result()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A private PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 only.

    `start()` initialises the data dir on first use (an existing cluster is
    reused with its data), starts the server on `port` (or a free one) and
    makes sure database `duet` exists; it returns the asyncpg DSN. `stop()`
    stops a server this object started; it is idempotent. If the server for
    this data dir is already running, `start()` connects to it; `stop()` then
    leaves it running, unless the process that started it has died (a killed
    run), in which case this object adopts it and stops it.

    Synchronous (it runs subprocesses): async code wraps it in asyncio.to_thread.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self._requested_port = port
        self._dsn: str | None = None
        self._owned = False  # True when this object started the server
        self._binaries: PostgresBinaries | None = None
        self._run_as: _RunAs | None = None

    def __repr__(self) -> str:
        state = "running" if self._dsn else "stopped"
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self.port!r}, {state})"

    # -- public -----------------------------------------------------------

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return self._dsn

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self) -> str:
        if self._dsn is not None:
            return self._dsn
        with self._lock():
            existing = self._read_pg_version()
            self._binaries = find_binaries(prefer_major=existing)
            if existing is not None and existing != self._binaries.major:
                raise RuntimeError(
                    f"{self.data_dir} holds a PostgreSQL {existing} cluster but only PostgreSQL "
                    f"{self._binaries.major} binaries were found ({self._binaries.bindir}); install PostgreSQL "
                    f"{existing} or remove the data dir (it holds only local dev data)"
                )
            self._run_as = self._pick_account() if os.geteuid() == 0 else None
            self._prepare_data_dir()
            if existing is None:
                self._initdb()
            running = self._running_postmaster()
            if running is None:
                self._start_server()
                self._owned = True
            else:
                pid, self.port = running
                owner = self._read_owner()
                # Adopt a server whose starter died without stopping it (killed
                # run), so it does not outlive us too; share any other one.
                self._owned = owner is not None and not _pid_alive(owner)
                logger.info(
                    "PostgreSQL already running for %s (pid %d, 127.0.0.1:%d); %s",
                    self.data_dir,
                    pid,
                    self.port,
                    f"adopting it (its starter, pid {owner}, is gone)"
                    if self._owned
                    else "using it and leaving it running",
                )
            if self._owned:
                self._owner_path.write_text(f"{os.getpid()}\n")
            dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"
            try:
                _run_coroutine(lambda: self._ensure_database())
            except BaseException:
                if self._owned:
                    self._pg_ctl_stop()
                    self._owner_path.unlink(missing_ok=True)
                    self._owned = False
                raise
            self._dsn = dsn
            return dsn

    def stop(self) -> None:
        if self._dsn is None:
            return
        self._dsn = None
        if not self._owned:
            return
        self._owned = False
        with self._lock():
            self._pg_ctl_stop()
            self._owner_path.unlink(missing_ok=True)
        self.port = self._requested_port

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- steps ------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two services started at once on the same state dir must not both initdb/start.
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @property
    def _owner_path(self) -> Path:
        # Which process started the server (next to the data dir, not in it: initdb wants it empty).
        return self.data_dir.parent / f".{self.data_dir.name}.owner"

    def _read_owner(self) -> int | None:
        try:
            return int(self._owner_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _read_pg_version(self) -> int | None:
        try:
            return int((self.data_dir / "PG_VERSION").read_text().strip())
        except FileNotFoundError:
            return None

    def _pick_account(self) -> _RunAs:
        """initdb, pg_ctl and postgres refuse to run as root: choose who runs them."""
        # An existing cluster keeps its owner (the server only opens a data dir it owns).
        try:
            st = self.data_dir.stat()
            if st.st_uid != 0 and (self.data_dir / "PG_VERSION").exists():
                return self._account(pwd.getpwuid(st.st_uid))
        except (FileNotFoundError, KeyError):
            pass
        for name in ("postgres", FALLBACK_SERVICE_USER):
            try:
                return self._account(pwd.getpwnam(name))
            except KeyError:
                continue
        useradd = shutil.which("useradd")
        if useradd is None:
            raise RuntimeError(
                "running as root, and PostgreSQL refuses to run as root; no 'postgres' user exists and "
                f"useradd is missing to create '{FALLBACK_SERVICE_USER}': create an unprivileged user named "
                f"'postgres' or '{FALLBACK_SERVICE_USER}', or run as a normal user"
            )
        nologin = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false")
        proc = subprocess.run(
            [useradd, "--system", "--no-create-home", "--user-group", "--shell", nologin, FALLBACK_SERVICE_USER],
            capture_output=True,
            text=True,
        )
        try:
            # Re-read even on failure: a concurrent process may have created it first.
            account = self._account(pwd.getpwnam(FALLBACK_SERVICE_USER))
        except KeyError:
            raise RuntimeError(f"could not create system user {FALLBACK_SERVICE_USER}: {proc.stderr.strip()}") from None
        logger.info("created system user %s to run PostgreSQL (it refuses to run as root)", FALLBACK_SERVICE_USER)
        return account

    @staticmethod
    def _account(pw: pwd.struct_passwd) -> _RunAs:
        return _RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)))

    def _prepare_data_dir(self) -> None:
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.data_dir.chmod(0o700)
        if self._read_pg_version() is None and any(self.data_dir.iterdir()):
            raise RuntimeError(
                f"{self.data_dir} is neither empty nor a PostgreSQL data dir; pick another state dir or empty it"
            )
        if self._run_as is None:
            return
        self._check_traversable()
        if self.data_dir.stat().st_uid != self._run_as.uid:
            for p in [self.data_dir, *self.data_dir.rglob("*")]:
                os.lchown(p, self._run_as.uid, self._run_as.gid)

    def _check_traversable(self) -> None:
        assert self._run_as is not None
        parent = self.data_dir.parent
        probe = subprocess.run(
            ["/bin/sh", "-c", 'cd "$1"', "sh", str(parent)], cwd="/", capture_output=True, **self._as_user()
        )
        if probe.returncode == 0:
            return
        blocker = parent
        for p in [*reversed(parent.parents), parent]:
            st = p.stat()
            if not (
                st.st_mode & stat.S_IXOTH
                or (st.st_uid == self._run_as.uid and st.st_mode & stat.S_IXUSR)
                or (st.st_gid in self._run_as.groups and st.st_mode & stat.S_IXGRP)
            ):
                blocker = p
                break
        raise RuntimeError(
            f"PostgreSQL runs as user '{self._run_as.name}' here (it refuses to run as root), but that user cannot "
            f"reach {self.data_dir}: {blocker} (mode {stat.filemode(blocker.stat().st_mode)}, owner "
            f"{_owner_name(blocker)}) is not traversable by it. Use a state dir under a world-traversable path "
            f"(e.g. duet.services.devkit.embedded_postgres.make_scratch_dir() for tests), or `chmod o+x {blocker}`"
        )

    def _as_user(self) -> dict[str, Any]:
        if self._run_as is None:
            return {}
        return {"user": self._run_as.uid, "group": self._run_as.gid, "extra_groups": list(self._run_as.groups)}

    def _run(self, args: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in _PG_ENV_VARS}
        return subprocess.run(
            list(args),
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **self._as_user(),
        )

    def _initdb(self) -> None:
        assert self._binaries is not None
        t0 = time.monotonic()
        proc = self._run(
            [
                self._binaries.path("initdb"),
                "-D",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",  # local dev cluster: loopback-only, see module doc
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",  # throwaway data: skip fsync of the new files
            ]
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"initdb failed for {self.data_dir} (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(_DEV_SETTINGS)
        logger.info(
            "initialised PostgreSQL %s cluster in %s (%.1f s)",
            self._binaries.version,
            self.data_dir,
            time.monotonic() - t0,
        )

    def _read_pidfile(self) -> list[str] | None:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None

    def _running_postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of a live server on this data dir; removes a stale postmaster.pid."""
        lines = self._read_pidfile()
        if lines is None:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            pid, port = 0, 0
        deadline = time.monotonic() + START_TIMEOUT_S
        while pid > 0 and _pid_alive(pid) and self._is_our_postmaster(pid):
            status = lines[7].strip() if len(lines) >= 8 else ""
            if status == "ready":
                return pid, port
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL (pid {pid}) for {self.data_dir} is stuck in state {status!r}")
            # Starting up or shutting down (another process is at it): wait for it to settle.
            time.sleep(0.1)
            lines = self._read_pidfile()
            if lines is None:
                return None
        # A killed run leaves postmaster.pid behind, and in a container the PID
        # may now belong to another process: the server would refuse to start.
        logger.warning(
            "removing stale %s (pid %s is not a running server for this data dir)",
            self.data_dir / "postmaster.pid",
            pid or "?",
        )
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        self._wait_for_orphans()
        return None

    def _wait_for_orphans(self, timeout: float = 15.0) -> None:
        """Wait for backends of a killed postmaster to exit: while they hold its
        shared memory a new server refuses to start."""
        deadline = time.monotonic() + timeout
        while True:
            left = self._processes_in_data_dir()
            if not left:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"old PostgreSQL processes {left} still run in {self.data_dir} although their postmaster is "
                    "gone; stop them (kill PID) and retry"
                )
            time.sleep(0.1)

    def _processes_in_data_dir(self) -> list[int]:
        # Server processes keep the data dir as working directory (Linux /proc only).
        target = str(self.data_dir.resolve())
        pids = []
        for entry in glob.glob("/proc/[0-9]*/cwd"):
            try:
                if os.readlink(entry) == target:
                    pids.append(int(entry.split("/")[2]))
            except OSError:
                continue  # gone, a zombie, or not ours to inspect
        return pids

    def _is_our_postmaster(self, pid: int) -> bool:
        # The postmaster's working directory is its data dir.
        try:
            return Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == self.data_dir.resolve()
        except FileNotFoundError:
            return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid file
        except PermissionError:
            try:
                return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return True

    def _start_server(self) -> None:
        assert self._binaries is not None
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            self.port = self._requested_port or free_port()
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            t0 = time.monotonic()
            # Enforced on the command line too, in case postgresql.conf was edited:
            # loopback TCP only, no unix socket (its path could exceed the 107-byte limit).
            opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            proc = self._run(
                [
                    self._binaries.path("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "-o",
                    opts,
                ],
                timeout=START_TIMEOUT_S + 30,
            )
            if proc.returncode == 0:
                logger.info(
                    "started PostgreSQL %s on 127.0.0.1:%d (data in %s, %.1f s)",
                    self._binaries.version,
                    self.port,
                    self.data_dir,
                    time.monotonic() - t0,
                )
                return
            log_tail = self._log_since(log_offset)
            # A free port can be taken between our probe and the server's bind: retry on another.
            if attempt < attempts and "Address already in use" in log_tail:
                logger.warning("port %d was taken before PostgreSQL could bind it; retrying", self.port)
                continue
            raise RuntimeError(
                f"PostgreSQL failed to start (pg_ctl exit {proc.returncode}) for {self.data_dir} on port {self.port}:\n"
                f"{proc.stdout}{proc.stderr}\n--- {self.log_path} ---\n{log_tail}"
            )

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return "(no server log)"

    def _pg_ctl_stop(self) -> None:
        if self._binaries is None or self._read_pidfile() is None:
            return
        proc = self._run(
            [self._binaries.path("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60"],
            timeout=90,
        )
        if proc.returncode != 0 and self._read_pidfile() is not None:
            logger.warning("pg_ctl stop failed for %s: %s", self.data_dir, (proc.stdout + proc.stderr).strip())
            return
        logger.info("stopped PostgreSQL on 127.0.0.1:%s (data in %s)", self.port, self.data_dir)

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, database="postgres", timeout=30)
        try:
            if not await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", DATABASE):
                try:
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    logger.info("created database %s", DATABASE)
                except asyncpg.DuplicateDatabaseError:
                    pass
        finally:
            await conn.close()


def _owner_name(p: Path) -> str:
    uid = p.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@contextlib.asynccontextmanager
async def database_url(url: str | None = None, state_dir: Path = Path(".duet")) -> AsyncIterator[str]:
    """Yield a database URL: `url`, else $DUET_DATABASE_URL, else a private
    cluster in `state_dir/pg`, started here and stopped on exit."""
    given = url or os.environ.get(DATABASE_URL_ENV)
    if given:
        yield given
        return
    pg = EmbeddedPostgres(Path(state_dir) / "pg")
    starting = asyncio.ensure_future(asyncio.to_thread(pg.start))
    try:
        dsn = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # The start thread cannot be interrupted: let it finish, then stop what it started.
        with contextlib.suppress(BaseException):
            await starting
        await asyncio.to_thread(pg.stop)
        raise
    try:
        yield dsn
    finally:
        await asyncio.to_thread(pg.stop)


__all__ = [
    "DATABASE_URL_ENV",
    "EmbeddedPostgres",
    "PostgresBinaries",
    "PostgresNotFound",
    "database_url",
    "find_binaries",
    "free_port",
    "make_scratch_dir",
]
