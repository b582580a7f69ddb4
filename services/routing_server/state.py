"""The routing service's live state: the declared topology, what is live, and the routes between them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Set

import networkx as nx

from duet.routing.all_pairs import AllPairsRoutes
from duet.routing.all_pairs_update import routes_after
from duet.routing.link_health import LinkWeights
from duet.routing.live_view import routed_topology
from duet.routing.paths import build_graph
from duet.routing.topology import Topology


def routes_of(topology: Topology, previous: AllPairsRoutes | None = None) -> tuple[nx.Graph[str], AllPairsRoutes]:
    """The routing graph and all-pairs routes of ``topology``; from ``previous`` when only links got
    worse (a failed link: only the paths that crossed it are recomputed), else the full pass."""
    # Only registered edges can carry traffic; the graph and routes are shared by all queries.
    graph = build_graph(topology, require_registered=True)
    return graph, routes_after(previous, graph)


class RoutingState:
    """The declared topology, its routed view (membership and link measurements applied) and their routes.

    ``topology`` is what was declared (file, admin changes, registrations):
    admin reads and changes it. ``routed`` is what routes, ingress and route
    tables use. A change of either wakes every route watcher
    (``generation`` counts them).

    Read-modify-write changes (a registration, an admin change) hold
    ``mutating`` from reading the topology to replacing it, so one that
    awaits in between (an audit write) cannot lose another's change.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.routed = topology
        self.graph, self.routes = routes_of(topology)
        self.generation = 0
        self.silent: frozenset[str] = frozenset()
        self.no_transit: frozenset[str] = frozenset()
        self.link_weights: Mapping[tuple[str, str], LinkWeights] = {}
        self.mutating = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._replacing = asyncio.Lock()

    async def replace(self, topology: Topology) -> None:
        """Make ``topology`` the declared one and recompute the routes."""
        self.topology = topology
        await self._recompute()

    async def set_live(
        self,
        *,
        silent: Set[str],
        link_weights: Mapping[tuple[str, str], LinkWeights],
        no_transit: Set[str] = frozenset(),
    ) -> None:
        """New membership or link weights: recompute the routes unless they route the same."""
        self.silent, self.no_transit, self.link_weights = frozenset(silent), frozenset(no_transit), dict(link_weights)
        await self._recompute()

    async def _recompute(self) -> None:
        # The all-pairs pass takes ~0.1 s at 500 edges (a failed link's update ~20 ms): off the
        # event loop (numpy releases the GIL), one at a time. Each pass reads the latest declared and live state when it
        # starts, so changes that arrive during a pass are coalesced into the next one.
        async with self._replacing:
            routed = routed_topology(
                self.topology, silent=self.silent, no_transit=self.no_transit, links=self.link_weights
            )
            if routed is self.routed:
                return
            if routed == self.routed and routed.version == self.routed.version:
                self.routed = routed
                return
            graph, routes = await asyncio.to_thread(routes_of, routed, self.routes)
            async with self._changed:
                self.routed, self.graph, self.routes = routed, graph, routes
                self.generation += 1
                self._changed.notify_all()

    async def wait_for_change(self, generation: int) -> int:
        """Wait until the routes change after ``generation``; the new generation."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.generation != generation)
            return self.generation
