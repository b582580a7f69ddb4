"""The routing service's live state: the current topology, its routing graph and all-pairs routes."""

from __future__ import annotations

import asyncio

import networkx as nx

from duet.routing.all_pairs import AllPairsRoutes, compute_routes
from duet.routing.paths import build_graph
from duet.routing.topology import Topology


def routes_of(topology: Topology) -> tuple[nx.Graph[str], AllPairsRoutes]:
    # Only registered edges can carry traffic; the graph and routes are shared by all queries.
    graph = build_graph(topology, require_registered=True)
    return graph, compute_routes(graph)


class RoutingState:
    """The live topology and its routes; a change wakes every route watcher.

    Read-modify-write changes (a registration, an admin change) hold
    ``mutating`` from reading the topology to replacing it, so one that
    awaits in between (an audit write) cannot lose another's change.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.graph, self.routes = routes_of(topology)
        self.mutating = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._replacing = asyncio.Lock()

    async def replace(self, topology: Topology) -> None:
        # The all-pairs pass takes ~0.2 s at 500 edges: off the event loop (numpy releases
        # the GIL), one change at a time so the last change's routes are the ones kept.
        async with self._replacing:
            graph, routes = await asyncio.to_thread(routes_of, topology)
            async with self._changed:
                self.topology, self.graph, self.routes = topology, graph, routes
                self._changed.notify_all()

    async def wait_for_change(self, version: int) -> Topology:
        async with self._changed:
            await self._changed.wait_for(lambda: self.topology.version != version)
            return self.topology
