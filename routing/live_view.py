"""The topology routes are computed from: the declared one with what is live applied.

The declared topology (file, admin changes, registrations) says what should
be; membership and probes say what is: edges that fell silent are routed as
DOWN, edges that carry no transit (reported unreachable while their heartbeat
is overdue) as DRAINING (they end their own calls' paths, no path goes
through them), links take their measured weights and are down while
unanswered. This view changes no declared state and keeps the declared
version, so an operator's view, diffs and audit log never show a
heartbeat's effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import replace

from duet.routing.link_health import LinkWeights
from duet.routing.topology import EdgeNode, EdgeState, Topology


def routed_topology(
    declared: Topology,
    *,
    silent: Set[str],
    links: Mapping[tuple[str, str], LinkWeights],
    no_transit: Set[str] = frozenset(),
) -> Topology:
    """``declared`` with silent edges DOWN, ``no_transit`` ones DRAINING (an operator's DOWN stays
    DOWN) and measured link weights (keys: ``Link.key``); itself when nothing applies."""
    edges = tuple(_live_edge(e, silent, no_transit) for e in declared.edges)
    new_links = []
    for ln in declared.links:
        w = links.get(ln.key)
        if w is not None:
            ln = replace(ln, rtt_ms=w.rtt_ms, loss=w.loss, up=ln.up and w.up)
        new_links.append(ln)
    links_now = tuple(new_links)
    if edges == declared.edges and links_now == declared.links:
        return declared
    return Topology(declared.regions, edges, links_now, declared.version)


def _live_edge(edge: EdgeNode, silent: Set[str], no_transit: Set[str]) -> EdgeNode:
    if edge.edge_id in silent:
        return replace(edge, state=EdgeState.DOWN)
    if edge.edge_id in no_transit and edge.state is EdgeState.ACTIVE:
        return replace(edge, state=EdgeState.DRAINING)
    return edge
