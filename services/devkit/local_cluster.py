"""The local cluster: PostgreSQL, routing, matchmaker and one edge per region on loopback.

Every service is its own process (as in production), started by this
supervisor, which owns them: Ctrl-C or SIGTERM stops the children in order
and then PostgreSQL, and the children also die if the supervisor is killed
(PR_SET_PDEATHSIG), so nothing is left behind.

Each child asks for that signal itself (``die_with_parent_if_asked``, called
by the ``duet`` command) rather than in a preexec_fn: a preexec_fn makes
subprocess fork() instead of vfork(), and in a process that already uses gRPC
(a test, or any program that embeds the cluster) gRPC's fork handlers restart
its threads in the child, whose poller then aborts when the child closes its
inherited descriptors before exec.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from duet.routing.geo_database import installed_default_database
from duet.routing.topology import Topology, default_topology
from duet.services.auth.secrets import (
    SECRETS_ENV,
    SECRETS_FILE_NAME,
    SERVICE_SECRET_ENV,
    SERVICE_TOKEN_ENV,
    USER_SECRET_ENV,
    AuthSecrets,
    SecretsError,
    ensure_secrets_file,
)
from duet.services.auth.sources import DevUserTokens
from duet.services.auth.tokens import DEFAULT_USER_TTL_S, Role, mint_service_token, mint_user_token
from duet.services.devkit.demo_geo import write_demo_mmdb
from duet.services.devkit.embedded_postgres import open_database
from duet.services.devkit.errors import SetupError
from duet.services.devkit.wan.cluster import ClusterEmulation, client_proxies
from duet.services.devkit.wan.profile import ENV_VAR as WAN_ENV_VAR
from duet.services.devkit.wan.profile import WanConfig

logger = logging.getLogger("duet.cluster")

DEFAULT_REGIONS = ("Frankfurt", "Virginia", "Singapore")
READY_TIMEOUT_S = 60.0


#: Written in the state dir while the cluster runs: its addresses, for commands run
#: beside it (``duet topology`` finds the routing service there).
CLUSTER_FILE = "cluster.json"

#: Set in a child's environment to the supervisor's PID: the child dies with it.
DIE_WITH_PARENT_ENV = "DUET_DIE_WITH_PARENT"


def die_with_parent_if_asked() -> None:
    """In a service the supervisor started: get SIGTERM when it dies, even by SIGKILL (Linux)."""
    parent = os.environ.pop(DIE_WITH_PARENT_ENV, "")  # not for our own children
    if not parent.isdigit():
        return
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    ready_line: str = ""
    drain: asyncio.Task[None] | None = None


@dataclass
class ClusterInfo:
    matchmaker: str  # the first replica's address
    routing: str
    edges: dict[str, str] = field(default_factory=dict)  # edge id -> control address
    edge_metrics: dict[str, str] = field(default_factory=dict)  # edge id -> Prometheus scrape URL
    routing_metrics: str = ""  # the routing service's Prometheus scrape URL
    matchmaker_metrics: str = ""  # the matchmaker's
    database_url: str = ""
    log_dir: Path = Path(".duet/logs")
    database_where: str | None = None  # where the private cluster's data is (None: a given URL)
    # The token-signing secrets every service was given (file: secrets_path), for minting dev tokens.
    secrets: AuthSecrets = field(default_factory=lambda: AuthSecrets(None, None, "nowhere"))
    secrets_path: Path = Path(".duet") / SECRETS_FILE_NAME

    def user_token(self, user_id: str, *, ttl_s: float = DEFAULT_USER_TTL_S) -> str:
        """A user token the cluster's matchmaker accepts."""
        return mint_user_token(self.secrets.require_user("minting a user token"), user_id, ttl_s=ttl_s)

    def user_tokens(self, user_id: str) -> DevUserTokens:
        """A token source for ``user_id``: a fresh token for every session (for DuetClient's ``token``)."""
        return DevUserTokens(self.secrets.require_user("minting user tokens"), user_id)

    def service_token(self, role: Role, subject: str | None = None) -> str:
        """A service token the cluster's services accept (``subject``: the edge id for role edge)."""
        return mint_service_token(self.secrets.require_service("minting a service token"), role, subject)

    # With WAN emulation: region -> the delay proxy a client in that region dials instead of `matchmaker`.
    matchmaker_by_region: dict[str, str] = field(default_factory=dict)
    emulation: ClusterEmulation | None = None
    # Every matchmaker replica (`duet up --matchmakers N`), the first being `matchmaker`; and their processes.
    matchmakers: list[str] = field(default_factory=list)
    matchmaker_pids: dict[str, int] = field(default_factory=dict)  # address -> process id
    matchmakers_metrics: list[str] = field(default_factory=list)

    def matchmaker_for(self, region: str) -> str:
        """The matchmaker address(es) a client in ``region`` dials: its delay proxy under WAN emulation,
        else every replica as a comma list (the SDK takes the first and falls back on the others)."""
        return self.matchmaker_by_region.get(region, ",".join(self.matchmakers) or self.matchmaker)


class LocalCluster:
    def __init__(
        self,
        *,
        state_dir: Path = Path(".duet"),
        database: str | None = None,
        regions: Sequence[str] = DEFAULT_REGIONS,
        log_level: str = "INFO",
        avoid_recent: int | None = None,
        emulation: ClusterEmulation | None = None,
        topology: Topology | None = None,
        matchmakers: int = 1,
        shards: str = "",
    ) -> None:
        """``avoid_recent``: the matchmaker's --avoid-recent (None: its default).

        ``matchmakers``: how many matchmaker replicas to run on the one database
        (``mm-1`` ...), and ``shards`` their --shards (default: one shard for
        the world; docs/replicas.md).

        ``topology``: run this topology (one edge process per edge it declares,
        links, RTTs and states as given) instead of the shipped one for
        ``regions``; its regions replace ``regions``, the first one being the
        routing service's default region.

        ``emulation``: emulate the WAN between the regions (a test and benchmark
        facility): the edges get ``$DUET_WAN`` for backbone, last mile and
        control plane, and clients reach the matchmaker through the proxies of
        ``ClusterInfo.matchmaker_by_region``.
        """
        if matchmakers < 1:
            raise SetupError(f"at least one matchmaker is needed, got {matchmakers}")
        self.avoid_recent = avoid_recent
        self.matchmakers = matchmakers
        self.shards = shards
        self.emulation = emulation
        self.state_dir = state_dir
        self.database = database
        self.topology = topology
        self.regions = tuple(r.name for r in topology.regions) if topology is not None else tuple(regions)
        self.log_level = log_level
        self.children: list[Child] = []
        self.info: ClusterInfo | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> ClusterInfo:
        try:
            return await self._start()
        except BaseException:
            await self._stop_even_if_cancelled()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_even_if_cancelled()

    async def _stop_even_if_cancelled(self) -> None:
        # Ctrl-C cancels whoever holds the cluster; a stop cut short would leave the children to
        # die all at once with the supervisor (and PostgreSQL under them), so it runs to the end.
        stopping = asyncio.ensure_future(self.stop())
        try:
            await asyncio.shield(stopping)
        except asyncio.CancelledError:
            await stopping
            raise

    async def _start(self) -> ClusterInfo:
        log_dir = self.state_dir / "logs"
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SetupError(f"cannot create the state dir {log_dir}: {exc.strerror or exc}") from exc
        t0 = time.monotonic()
        db = await self._stack.enter_async_context(open_database(self.database, state_dir=self.state_dir))
        dsn = db.url
        geo = write_demo_mmdb(self.state_dir / "demo-geo.mmdb")
        topology = self.topology if self.topology is not None else default_topology(self.regions)
        topo_path = self.state_dir / "topology.json"
        topo_path.write_text(json.dumps(topology.to_dict(), indent=2))
        # Kept across runs, so dev tokens minted from it (duet token mint, duet call) stay valid;
        # $DUET_AUTH_SECRETS names another file (made if missing), as it does for those commands.
        named = os.environ.get(SECRETS_ENV)
        secrets_path = (Path(named) if named else self.state_dir / SECRETS_FILE_NAME).absolute()
        try:
            auth = ensure_secrets_file(secrets_path)
        except SecretsError as exc:
            raise SetupError(str(exc)) from exc
        env = dict(os.environ, DUET_CLUSTER_KEY=secrets.token_hex(32), PYTHONUNBUFFERED="1")
        env[DIE_WITH_PARENT_ENV] = str(os.getpid())
        env[SECRETS_ENV] = str(secrets_path)
        for name in (USER_SECRET_ENV, SERVICE_SECRET_ENV, SERVICE_TOKEN_ENV):  # the file above is the one to use
            env.pop(name, None)
        service_secret = auth.require_service("the local cluster mints its services' tokens with it")
        edge_env = env
        if self.emulation is not None:
            try:
                self.emulation.control_plane(topology)
            except ValueError as exc:
                raise SetupError(f"WAN emulation: {exc}") from exc
            edge_env = dict(env, **{WAN_ENV_VAR: self.emulation.edge_env(topo_path.resolve())})
        try:
            emulated_backbone = bool(WanConfig.from_env(edge_env).backbone)
        except ValueError as exc:
            raise SetupError(f"WAN emulation: {exc}") from exc

        routing = await self._spawn(
            "routing",
            [
                "routing",
                "--bind",
                "127.0.0.1:0",
                "--topology",
                str(topo_path),
                "--geoip-db",
                str(geo),
                *geoip_fallback(),
                "--default-region",
                self.regions[0],
                "--database-url",
                dsn,
                # The regions are this run's: a topology applied in an earlier run must not replace them.
                "--reset-topology",
                # On bare loopback every link measures ~0.2 ms: route by the topology's RTTs, which
                # the WAN emulation (when on) makes real.
                "--link-weights",
                "measured" if emulated_backbone else "declared",
                "--metrics-port",
                "0",
            ],
            env,
            log_dir,
        )
        routing_address = _field(routing.ready_line, "address")
        edges = await asyncio.gather(
            *(
                self._spawn(
                    f"edge-{e.edge_id}",
                    ["edge", "--edge-id", e.edge_id, "--routing", routing_address, "--metrics-port", "0"],
                    {**edge_env, SERVICE_TOKEN_ENV: mint_service_token(service_secret, Role.EDGE, e.edge_id)},
                    log_dir,
                )
                for e in topology.edges
            )
        )
        mm_env = {**env, SERVICE_TOKEN_ENV: mint_service_token(service_secret, Role.MATCHMAKER)}
        # Started together, so the replicas see each other before taking shards and split them.
        replicas = await asyncio.gather(
            *(
                self._spawn(
                    "matchmaker" if self.matchmakers == 1 else f"matchmaker-{i + 1}",
                    [
                        "matchmaker",
                        "--bind",
                        "127.0.0.1:0",
                        "--routing",
                        routing_address,
                        "--database-url",
                        dsn,
                        "--trust-forwarded-for",
                        "--metrics-port",
                        "0",
                        "--replica-id",
                        f"mm-{i + 1}",
                        *(["--shards", self.shards] if self.shards else []),
                        *(["--avoid-recent", str(self.avoid_recent)] if self.avoid_recent is not None else []),
                    ],
                    mm_env,
                    log_dir,
                )
                for i in range(self.matchmakers)
            )
        )
        mm = replicas[0]
        matchmaker = _field(mm.ready_line, "address")
        by_region: dict[str, str] = {}
        if self.emulation is not None:
            by_region = await self._stack.enter_async_context(
                client_proxies(self.emulation, topology, matchmaker, self.regions)
            )
        self.info = ClusterInfo(
            matchmaker=matchmaker,
            routing=routing_address,
            edges={c.name.removeprefix("edge-"): _field(c.ready_line, "control") for c in edges},
            edge_metrics={c.name.removeprefix("edge-"): _field(c.ready_line, "metrics") for c in edges},
            routing_metrics=_field(routing.ready_line, "metrics"),
            matchmaker_metrics=_field(mm.ready_line, "metrics"),
            database_url=dsn,
            log_dir=log_dir,
            database_where=db.describe(),
            secrets=auth,
            secrets_path=secrets_path,
            matchmaker_by_region=by_region,
            emulation=self.emulation,
            matchmakers=[_field(r.ready_line, "address") for r in replicas],
            matchmaker_pids={_field(r.ready_line, "address"): r.proc.pid for r in replicas},
            matchmakers_metrics=[_field(r.ready_line, "metrics") for r in replicas],
        )
        (self.state_dir / CLUSTER_FILE).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "routing": routing_address,
                    "matchmaker": self.info.matchmaker,
                    "matchmakers": self.info.matchmakers,
                }
            )
        )
        logger.info("cluster up in %.1f s", time.monotonic() - t0)
        return self.info

    async def _spawn(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
        log_path = log_dir / f"{name}.log"
        # A local file opened once per child: not worth a thread hop.
        with open(log_path, "ab") as log:  # noqa: ASYNC230
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "duet.services.cli",
                *args,
                "--log-level",
                self.log_level,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
            )
        child = Child(name, proc, log_path)
        self.children.append(child)
        assert proc.stdout is not None
        try:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
                if not line:
                    code = await proc.wait()
                    raise SetupError(f"{name} exited before it was ready (exit {code}){_last_words(log_path)}")
                text = line.decode().strip()
                if " ready " in f" {text} ":
                    child.ready_line = text
                    break
        except TimeoutError:
            raise SetupError(f"{name} was not ready within {READY_TIMEOUT_S:.0f} s{_last_words(log_path)}") from None
        child.drain = asyncio.create_task(_drain(proc.stdout, log_path))
        logger.info("%s ready (pid %d)", name, proc.pid)
        return child

    async def stop(self) -> None:
        if self.info is not None:
            with contextlib.suppress(OSError):
                (self.state_dir / CLUSTER_FILE).unlink()
        # Matchmaker first (it ends sessions and unbridges), then edges, then routing. The edges
        # stop together: one after another, thirteen of them (the world) took seconds each way.
        groups: list[list[Child]] = []
        for child in reversed(self.children):
            is_edge = child.name.startswith("edge-")
            if groups and is_edge and groups[-1][0].name.startswith("edge-"):
                groups[-1].append(child)
            else:
                groups.append([child])
        for group in groups:
            await asyncio.gather(*(self._stop_child(child) for child in group))
        self.children.clear()
        await self._stack.aclose()

    async def _stop_child(self, child: Child) -> None:
        if child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.proc.wait(), 10)
            except TimeoutError:
                logger.warning("%s did not stop within 10 s; killing it", child.name)
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        if child.drain is not None:
            child.drain.cancel()
            await asyncio.gather(child.drain, return_exceptions=True)


def running_cluster_address(state_dir: Path, service: str) -> str | None:
    """A service's address from a local cluster running with this state dir, or None.

    None as well when the file is left over from a cluster that no longer
    runs (its supervisor was killed) or cannot be read.
    """
    try:
        doc = json.loads((state_dir / CLUSTER_FILE).read_text())
        pid = int(doc["pid"])
        os.kill(pid, 0)  # still running? (signal 0 only checks)
        address = doc[service]
    except PermissionError:  # running, under another user
        address = doc.get(service) if isinstance(doc, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return address if isinstance(address, str) and address else None


async def _drain(stream: asyncio.StreamReader, log_path: Path) -> None:
    # Service stdout is a few lines per run; a local append does not stall the loop.
    with open(log_path, "ab") as log:  # noqa: ASYNC230
        while line := await stream.readline():
            log.write(line)
            log.flush()


def geoip_fallback() -> list[str]:
    """The real database behind the demo one, when installed: demo users keep their made-up
    addresses, anyone else is placed by DB-IP City Lite."""
    real = installed_default_database()
    return ["--geoip-db", str(real)] if real is not None else []


def _last_words(log_path: Path) -> str:
    """What a service that did not start said last (its error, even after a traceback), and where its log is."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))  # logs append across runs: read only the end
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    said = f": {lines[-1]}" if lines else ""
    return f"{said}; its log: {log_path}"


def _field(line: str, key: str) -> str:
    for part in line.split():
        if part.startswith(key + "="):
            return part.split("=", 1)[1]
    raise RuntimeError(f"no {key}= in ready line {line!r}")
