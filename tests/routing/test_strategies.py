"""The topology strategy itself: what the routing property tests are fed."""

from __future__ import annotations

from hypothesis import given, settings

from duet.routing.topology import Topology
from tests.routing.strategies import topologies


@settings(max_examples=30, deadline=None)
@given(topologies())
def test_strategy_builds_valid_topologies(topology: Topology) -> None:
    assert 2 <= len(topology.edges) <= 6
    assert sorted(e.number for e in topology.edges) == list(range(1, len(topology.edges) + 1))
