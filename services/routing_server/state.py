"""The routing service's live state: the current topology and its routing graph."""

from __future__ import annotations

import asyncio

import networkx as nx

from duet.routing.paths import build_graph
from duet.routing.topology import Topology


class RoutingState:
    """The live topology and its graph; a change wakes every route watcher.

    Read-modify-write changes (a registration, an admin change) hold
    ``mutating`` from reading the topology to replacing it, so one that
    awaits in between (an audit write) cannot lose another's change.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology: Topology
        self.graph: nx.Graph[str]
        self.mutating = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._set(topology)

    def _set(self, topology: Topology) -> None:
        self.topology = topology
        # Only registered edges can carry traffic; the graph is shared by all queries.
        self.graph = build_graph(topology, require_registered=True)

    async def replace(self, topology: Topology) -> None:
        async with self._changed:
            self._set(topology)
            self._changed.notify_all()

    async def wait_for_change(self, version: int) -> Topology:
        async with self._changed:
            await self._changed.wait_for(lambda: self.topology.version != version)
            return self.topology
