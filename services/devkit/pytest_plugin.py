"""Duet's pytest plugin: a local cluster of your topology under WAN emulation, and clients for your tests.

Installed with Duet (the ``pytest11`` entry point ``duet``), so any test
session where Duet is installed has these options and fixtures; nothing
starts unless a test asks for a fixture. See docs/connect-time-in-ci.md.

Options (command line, or the same name with underscores in the ini file):

``--duet-topology FILE``       the topology file to run (docs/operations.md); default: the shipped world
``--duet-control-region NAME`` where the matchmaker and routing service run (default Frankfurt)
``--duet-last-mile-ms MS``     each client leg, one way (default 15)
``--duet-database-url URL``    PostgreSQL to use (default: $DUET_DATABASE_URL, else a private server)

Fixtures:

``duet_cluster`` (session)  a :class:`DuetCluster`: the running cluster, its topology, the connect model
``duet_client`` (test)      ``await duet_client(region, user=...)``: a connected client placed in the region

The cluster runs on a thread of its own (:mod:`.cluster_thread`), so it
outlives each test's event loop; ``duet_client`` needs pytest-asyncio, and
the clients it made leave at the end of the test.

Duet's own imports happen inside the fixtures: pytest loads this plugin
before any conftest, and importing gRPC that early would fix its fork
support before a project's conftest could set it.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from duet.routing.connect_model import ConnectPrediction
    from duet.routing.topology import Topology
    from duet.services.client import DuetClient
    from duet.services.devkit.local_cluster import ClusterInfo
    from duet.services.devkit.wan.cluster import ClusterEmulation

__all__ = ["DuetClientFactory", "DuetCluster"]

_OPTIONS = (
    ("duet_topology", "FILE", "the topology file the local cluster runs (default: the shipped world, 13 regions)"),
    ("duet_control_region", "NAME", "the region the matchmaker and routing service run in (default: Frankfurt)"),
    ("duet_last_mile_ms", "MS", "each client leg's one-way delay in ms (default: 15)"),
    ("duet_database_url", "URL", "PostgreSQL for the cluster (default: $DUET_DATABASE_URL, else a private server)"),
)

#: What a test awaits to get a connected client: ``await duet_client("Sydney", user="ana")``.
DuetClientFactory = Callable[..., Awaitable["DuetClient"]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("duet", "Duet: a local cluster under WAN emulation for connect-time tests")
    for name, metavar, text in _OPTIONS:
        group.addoption("--" + name.replace("_", "-"), dest=name, metavar=metavar, default=None, help=text)
        parser.addini(name, text, default="")


def _setting(config: pytest.Config, name: str) -> str:
    given = config.getoption(name)
    if given:
        return str(given)
    value = config.getini(name)
    return str(value).strip() if value else ""


@dataclass
class DuetCluster:
    """The running cluster a test gets from ``duet_cluster``."""

    info: ClusterInfo  # addresses, and tokens for any user (info.user_tokens)
    topology: Topology
    emulation: ClusterEmulation
    _regions_without_clients: set[str] = field(default_factory=set)

    def predict(self, region_a: str, region_b: str) -> ConnectPrediction:
        """The connect model's prediction for a user in each region (routing/connect_model.py)."""
        from duet.routing.connect_model import predict_connect

        return predict_connect(
            self.topology,
            self.emulation.control_region,
            region_a,
            region_b,
            last_mile_ms=self.emulation.last_mile_ms,
        )

    def bound_ms(self, region_a: str, region_b: str) -> float:
        """The most a call between the two regions may take, match -> first frame (the model's bound)."""
        from duet.routing.connect_model import connect_bound_ms

        return connect_bound_ms(self.predict(region_a, region_b))


def _load_topology(config: pytest.Config) -> Topology:
    from duet.routing.topology_file import TopologyFileError, load_topology_file, load_world_topology

    named = _setting(config, "duet_topology")
    if not named:
        return load_world_topology()
    path = Path(named)
    if not path.is_absolute():
        # Relative to the ini file's folder when set there, else to where pytest was started.
        from_ini = not config.getoption("duet_topology") and config.inipath is not None
        base = config.inipath.parent if from_ini and config.inipath else config.invocation_params.dir
        path = base / path
    try:
        return load_topology_file(path)
    except TopologyFileError as exc:
        raise pytest.UsageError(f"duet: the topology file {path} cannot be used:\n{exc}") from None


def _emulation(config: pytest.Config, topology: Topology) -> ClusterEmulation:
    from duet.services.devkit.wan.cluster import DEFAULT_CONTROL_REGION, ClusterEmulation

    control = _setting(config, "duet_control_region") or DEFAULT_CONTROL_REGION
    last_mile = _setting(config, "duet_last_mile_ms") or "15"
    try:
        last_mile_ms = float(last_mile)
    except ValueError:
        raise pytest.UsageError(f"duet: --duet-last-mile-ms must be a number of ms, got {last_mile!r}") from None
    if not math.isfinite(last_mile_ms) or last_mile_ms < 0:
        raise pytest.UsageError(f"duet: --duet-last-mile-ms must be a number >= 0, got {last_mile!r}")
    if not topology.has_region(control):
        names = ", ".join(r.name for r in topology.regions)
        raise pytest.UsageError(f"duet: the control region {control!r} is not in the topology (its regions: {names})")
    return ClusterEmulation(control_region=control, last_mile_ms=last_mile_ms)


@pytest.fixture(scope="session")
def duet_cluster(pytestconfig: pytest.Config) -> Iterator[DuetCluster]:
    """The local cluster of ``--duet-topology`` under WAN emulation, started once per test session."""
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # as the duet command and Duet's tests set it
    from duet.services.devkit.cluster_thread import ClusterThread
    from duet.services.devkit.embedded_postgres import make_scratch_dir
    from duet.services.devkit.errors import SetupError
    from duet.services.devkit.local_cluster import LocalCluster

    topology = _load_topology(pytestconfig)
    emulation = _emulation(pytestconfig, topology)
    # Not pytest's tmp dirs: run as root, PostgreSQL runs as another user, closed out of those.
    state_dir = make_scratch_dir("duet-pytest-")
    cluster = LocalCluster(
        state_dir=state_dir,
        database=_setting(pytestconfig, "duet_database_url") or None,
        topology=topology,
        emulation=emulation,
    )
    runner = ClusterThread(cluster)
    try:
        try:
            info = runner.start()
        except SetupError as exc:
            pytest.fail(f"duet: the local cluster did not start: {exc}", pytrace=False)
        yield DuetCluster(info, topology, emulation)
    finally:
        runner.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def _client_factory(cluster: DuetCluster) -> tuple[DuetClientFactory, list[DuetClient]]:
    from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
    from duet.services.devkit.synthetic_media import synthetic_client

    made: list[DuetClient] = []

    async def make(region: str, user: str | None = None, **client_kwargs: Any) -> DuetClient:
        """A client in ``region`` (a shipped region: the cluster places it by a synthetic address there),
        connected: its leg to its edge is up and it can ``find_partner()``. ``user`` defaults to a fresh id;
        ``client_kwargs`` go to DuetClient (timeouts, ...)."""
        if region not in DEMO_CLIENT_IPS:
            raise ValueError(
                f"duet_client: cannot place a client in {region!r}: clients can be placed in the shipped "
                f"regions only ({', '.join(DEMO_CLIENT_IPS)}); the local cluster locates them by synthetic "
                "addresses of those regions"
            )
        if not cluster.topology.has_region(region):
            raise ValueError(f"duet_client: {region!r} is not a region of the topology under test")
        tag = next(_tags)
        user_id = user or f"ci-user-{tag}"
        client = synthetic_client(
            cluster.info.matchmaker_for(region),
            user_id,
            f"{user_id}@{region}",
            tag=tag,
            client_ip=DEMO_CLIENT_IPS[region],
            token=cluster.info.user_tokens(user_id),
            **client_kwargs,
        )
        made.append(client)
        await client.connect()
        return client

    return make, made


# Every client of the session draws a different tag into its frames: its partners tell its first frame by it.
_tags = itertools.count(7000)


def _duet_client_fixture() -> Any:
    try:
        import pytest_asyncio
    except ImportError:  # the plugin loads anyway; only duet_client needs an async test runner

        def needs_pytest_asyncio() -> None:
            pytest.fail(
                "duet: the duet_client fixture needs pytest-asyncio (pip install pytest-asyncio)", pytrace=False
            )

        return pytest.fixture(needs_pytest_asyncio, name="duet_client")

    @pytest_asyncio.fixture
    async def duet_client(duet_cluster: DuetCluster) -> AsyncIterator[DuetClientFactory]:
        """``await duet_client(region, user=...)``: a connected client of the session's cluster; all leave after the test."""
        import asyncio

        make, made = _client_factory(duet_cluster)
        try:
            yield make
        finally:
            await asyncio.gather(*(c.leave() for c in made), return_exceptions=True)

    return duet_client


duet_client = _duet_client_fixture()
