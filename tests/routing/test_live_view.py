"""The routed view: silent edges DOWN, measured link weights, the declared topology untouched."""

from __future__ import annotations

from duet.routing.link_health import LinkWeights
from duet.routing.live_view import routed_topology
from duet.routing.topology import EdgeState, default_topology


def test_nothing_live_is_the_declared_topology_itself() -> None:
    t = default_topology()
    assert routed_topology(t, silent=set(), links={}) is t
    ln = t.links[0]
    same = {ln.key: LinkWeights(ln.rtt_ms, ln.loss, True)}
    assert routed_topology(t, silent=set(), links=same) is t


def test_silent_edges_are_down_and_links_take_their_weights() -> None:
    t = default_topology()
    ln = t.link("fra-1", "vir-1")
    assert ln is not None
    routed = routed_topology(t, silent={"sin-1"}, links={ln.key: LinkWeights(12.5, 0.1, False)})
    assert routed.version == t.version
    assert routed.edge("sin-1").state is EdgeState.DOWN and t.edge("sin-1").state is EdgeState.ACTIVE
    new = routed.link("fra-1", "vir-1")
    assert new is not None and (new.rtt_ms, new.loss, new.up) == (12.5, 0.1, False)


def test_a_link_an_operator_took_down_stays_down_whatever_it_measures() -> None:
    t = default_topology().with_link("fra-1", "vir-1", up=False)
    ln = t.link("fra-1", "vir-1")
    assert ln is not None
    routed = routed_topology(t, silent=set(), links={ln.key: LinkWeights(5.0, 0.0, True)})
    link = routed.link("fra-1", "vir-1")
    assert link is not None and not link.up


def test_edges_with_no_transit_drain_and_an_operators_state_wins() -> None:
    t = default_topology().with_edge_state("vir-1", EdgeState.DOWN)
    routed = routed_topology(t, silent={"sin-1"}, no_transit={"fra-1", "vir-1", "sin-1"}, links={})
    assert routed.edge("fra-1").state is EdgeState.DRAINING  # ends its own calls' paths, carries no transit
    assert routed.edge("vir-1").state is EdgeState.DOWN  # the operator's DOWN stays DOWN
    assert routed.edge("sin-1").state is EdgeState.DOWN  # silent: out altogether
    assert t.edge("fra-1").state is EdgeState.ACTIVE
