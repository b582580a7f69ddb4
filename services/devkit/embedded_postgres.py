"""A private local PostgreSQL cluster for development and tests.

With no database URL given, the services and the tests start their own cluster
from the machine's PostgreSQL server binaries (initdb, pg_ctl, postgres) in a
project-local data folder, on a free loopback port. Nothing here is meant for
production data: the cluster trusts every local TCP connection and runs with
crash-safety settings turned off for speed.

Finding the binaries is in ``postgres_binaries``; who runs the server as root,
and where its data dir goes when that account cannot reach the state dir, is
in ``postgres_placement``. Their public names are importable from here too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import glob
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

from duet.services.devkit import postgres_placement as placement_mod
from duet.services.devkit.errors import SetupError
from duet.services.devkit.postgres_binaries import (
    BINARY_GLOBS,
    DATABASE_URL_ENV,
    PostgresBinaries,
    PostgresNotFound,
    find_binaries,
)
from duet.services.devkit.postgres_placement import FALLBACK_SERVICE_USER, Placement, ServerAccount

logger = logging.getLogger("duet.db")

#: Cluster superuser and the database the services use.
SUPERUSER = "duet"
DATABASE = "duet"
START_TIMEOUT_S = 60

# Appended to postgresql.conf right after initdb. Dev/test settings: no fsync
# and no full-page writes trade safety against an OS crash or power loss (the
# cluster holds only throwaway data) for speed. synchronous_commit stays on, so
# a killed server still keeps every committed transaction.
_DEV_SETTINGS = """
# --- added by duet (services/devkit/embedded_postgres.py): throwaway dev/test cluster ---
fsync = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 200
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
"""

_PG_ENV_VARS = ("PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGDATABASE", "PGOPTIONS", "PGPASSWORD", "PGSERVICE")

T = TypeVar("T")


def free_port() -> int:
    """A currently free loopback TCP port (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_scratch_dir(prefix: str = "duet-pg-") -> Path:
    """A fresh temporary directory the server account can traverse.

    As root the server runs as another user, and pytest's own tmp dirs
    (/tmp/pytest-of-root, mode 0700) are closed to it; this one is mode 0711,
    so the data dir stays inside it rather than being relocated. The caller removes it.
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
    """A private PostgreSQL cluster for the data dir `data_dir`, listening on 127.0.0.1 only.

    `start()` initialises the data dir on first use (an existing cluster is
    reused with its data), starts the server on `port` (or a free one) and
    makes sure database `duet` exists; it returns the asyncpg DSN. `stop()`
    stops a server this object started; it is idempotent. If the server for
    this data dir is already running, `start()` connects to it; `stop()` then
    leaves it running, unless the process that started it has died (a killed
    run), in which case this object adopts it and stops it.

    As root, when the server account cannot reach `data_dir`, the data goes to
    a per-checkout folder under `relocation_root` (default /var/tmp/duet-postgres;
    see postgres_placement): after start(), `data_dir` is where the data really
    is and `placement` says why.

    Synchronous (it runs subprocesses): async code wraps it in asyncio.to_thread.
    Expected failures (missing binaries, a foreign folder, a server that will
    not start) raise SetupError with a message that says what to do.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, relocation_root: Path | None = None) -> None:
        self.requested_dir = Path(data_dir).absolute()
        self.data_dir = self.requested_dir
        self.port = port
        self.placement: Placement | None = None
        self._requested_port = port
        self._relocation_root = relocation_root
        self._dsn: str | None = None
        self._owned = False  # True when this object started the server
        self._binaries: PostgresBinaries | None = None
        self._run_as: ServerAccount | None = None

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
            root = self._relocation_root or placement_mod.RELOCATION_ROOT
            existing = placement_mod.find_existing(self.requested_dir, root)
            major = self._read_pg_version(existing) if existing is not None else None
            self._binaries = find_binaries(prefer_major=major)
            if major is not None and major != self._binaries.major:
                raise SetupError(
                    f"{existing} holds a PostgreSQL {major} cluster but only PostgreSQL "
                    f"{self._binaries.major} binaries were found ({self._binaries.bindir}); install PostgreSQL "
                    f"{major} or remove {existing} (it holds only local dev data)"
                )
            self._run_as = placement_mod.pick_account(existing) if os.geteuid() == 0 else None
            self.placement = placement_mod.place(self.requested_dir, self._run_as, root)
            self.data_dir = self.placement.data_dir
            if self.placement.relocated:
                logger.info(
                    "PostgreSQL data for %s is in %s: %s",
                    self.requested_dir.parent,
                    self.data_dir,
                    self.placement.reason,
                )
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
        # Two services started at once on the same state dir must not both place/initdb/start.
        # Next to the requested data dir: root can always write there, wherever the data goes.
        folder = self.requested_dir.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            f = open(folder / f".{self.requested_dir.name}.lock", "a")  # noqa: SIM115 (held for the block)
        except OSError as exc:
            raise SetupError(f"cannot use {folder} for the PostgreSQL state: {exc.strerror or exc}") from exc
        with f:
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

    @staticmethod
    def _read_pg_version(data_dir: Path) -> int | None:
        try:
            return int((data_dir / "PG_VERSION").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _prepare_data_dir(self) -> None:
        assert self.placement is not None
        if self._run_as is not None:
            if self.placement.relocated:
                placement_mod.prepare_relocation(self.placement, self._run_as)
            else:
                placement_mod.drop_pointer(self.requested_dir.parent)
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.data_dir.chmod(0o700)
        if self._run_as is not None and self.data_dir.stat().st_uid != self._run_as.uid:
            for p in [self.data_dir, *self.data_dir.rglob("*")]:
                os.lchown(p, self._run_as.uid, self._run_as.gid)

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
            **(self._run_as.subprocess_kwargs() if self._run_as is not None else {}),
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
            raise SetupError(
                f"initdb failed for {self.data_dir} (exit {proc.returncode}); its output:\n"
                f"{(proc.stdout + proc.stderr).strip()}"
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
                raise SetupError(
                    f"PostgreSQL (pid {pid}) for {self.data_dir} is stuck in state {status!r}; "
                    f"stop it (kill {pid}) and retry"
                )
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
                raise SetupError(
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
            port_taken = "Address already in use" in log_tail
            # A free port can be taken between our probe and the server's bind: retry on another.
            if attempt < attempts and port_taken:
                logger.warning("port %d was taken before PostgreSQL could bind it; retrying", self.port)
                continue
            what = (
                f"port {self.port} is already in use: stop what listens there or pick another port"
                if port_taken
                else f"see its log {self.log_path} (the data dir holds only local dev data: removing it starts afresh)"
            )
            raise SetupError(
                f"PostgreSQL failed to start for {self.data_dir} on 127.0.0.1:{self.port} "
                f"(pg_ctl exit {proc.returncode}); {what}. The end of its log:\n{log_tail.strip()}"
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


@dataclass(frozen=True)
class Database:
    """The database a command uses: its URL and, for a private cluster, where its data is."""

    url: str
    placement: Placement | None = None  # None: a server given by URL

    def describe(self) -> str | None:
        """One line for people: where the private cluster's data is (None for a given URL)."""
        if self.placement is None:
            return None
        where = f"PostgreSQL data in {self.placement.data_dir}"
        if not self.placement.relocated:
            return where
        return f"{where}\n  (not in {self.placement.requested}: {self.placement.reason})"


@contextlib.asynccontextmanager
async def open_database(
    url: str | None = None, state_dir: Path = Path(".duet"), *, relocation_root: Path | None = None
) -> AsyncIterator[Database]:
    """Yield the Database to use: `url`, else $DUET_DATABASE_URL, else a private
    cluster for `state_dir/pg`, started here and stopped on exit."""
    given = url or os.environ.get(DATABASE_URL_ENV)
    if given:
        yield Database(given)
        return
    pg = EmbeddedPostgres(Path(state_dir) / "pg", relocation_root=relocation_root)
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
        yield Database(dsn, pg.placement)
    finally:
        await asyncio.to_thread(pg.stop)


@contextlib.asynccontextmanager
async def database_url(url: str | None = None, state_dir: Path = Path(".duet")) -> AsyncIterator[str]:
    """Yield a database URL: `url`, else $DUET_DATABASE_URL, else a private
    cluster in `state_dir/pg`, started here and stopped on exit."""
    async with open_database(url, state_dir) as db:
        yield db.url


__all__ = [
    "BINARY_GLOBS",
    "DATABASE_URL_ENV",
    "FALLBACK_SERVICE_USER",
    "Database",
    "EmbeddedPostgres",
    "Placement",
    "PostgresBinaries",
    "PostgresNotFound",
    "SetupError",
    "database_url",
    "find_binaries",
    "free_port",
    "make_scratch_dir",
    "open_database",
]
