"""Topology diffs, the connect-time impact of a change, and the rules of applying a file to a live topology."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings

from duet.routing.connect_model import predict_connect
from duet.routing.topology import EdgeNode, Region, Topology, default_topology
from duet.routing.topology_apply import ChangeRefused, plan_apply
from duet.routing.topology_diff import Change, connect_impact, diff_topologies, live_call_warnings
from tests.routing.strategies import topologies

FRA, VIR, SIN = "Frankfurt", "Virginia", "Singapore"


def base() -> Topology:
    return default_topology((FRA, VIR, SIN))


def test_no_change_is_no_diff() -> None:
    t = base()
    assert diff_topologies(t, t.with_version(9)) == []
    registered = t.with_edge_addresses("fra-1", control_address="h:1", backbone_address="h:2", media_host="127.0.0.1")
    assert diff_topologies(t, registered) == []  # registrations are the service's, not the declaration's


def test_each_kind_of_change_in_words() -> None:
    t = base()
    lab = Region("Lab", 52.5, 13.4)
    after = Topology(
        (*t.regions, lab),
        (*[e for e in t.edges if e.edge_id != "sin-1"], EdgeNode("lab-1", 9, "Lab", capacity=5)),
        tuple(ln for ln in t.links if "sin-1" not in (ln.a, ln.b)),
    )
    after = after.with_edge_state("fra-1", "draining").with_link("fra-1", "vir-1", rtt_ms=120, up=False)
    after = after.with_link("fra-1", "lab-1", rtt_ms=3)
    assert [str(c) for c in diff_topologies(t, after)] == [
        "region Lab: added (lat 52.5, lon 13.4)",
        "edge fra-1: state active -> draining",
        "edge sin-1: removed",
        "edge lab-1: added (number 9, region Lab, capacity 5, active)",
        "link fra-1<->vir-1: rtt_ms 89 -> 120, state up -> down",
        "link fra-1<->sin-1: removed",
        "link vir-1<->sin-1: removed",
        "link fra-1<->lab-1: added (rtt 3 ms, loss 0, up)",
    ]
    assert Change("edge", "x", "removed") in diff_topologies(
        Topology(t.regions, (*t.edges, EdgeNode("x", 50, FRA)), t.links), t
    )


@settings(max_examples=60, deadline=None)
@given(topologies(), topologies())
def test_a_diff_is_empty_exactly_when_the_declarations_match(a: Topology, b: Topology) -> None:
    same = a.regions == b.regions and [(e.edge_id, e.number, e.region, e.capacity, e.state) for e in a.edges] == [
        (e.edge_id, e.number, e.region, e.capacity, e.state) for e in b.edges
    ]
    same = same and {ln.key: (ln.rtt_ms, ln.loss, ln.up) for ln in a.links} == {
        ln.key: (ln.rtt_ms, ln.loss, ln.up) for ln in b.links
    }
    assert (diff_topologies(a, b) == []) == same
    assert diff_topologies(a, a) == []


def test_warnings_name_the_changes_that_end_calls() -> None:
    t = base()
    assert live_call_warnings(t, t.with_edge_state("fra-1", "draining")) == []
    assert live_call_warnings(t, t.with_edge_state("fra-1", "down")) == [
        "edge fra-1 goes down: calls on it end (drain it first and wait for them)"
    ]


def test_impact_lists_every_pair_before_and_after() -> None:
    t = base()
    slower = t.with_link("fra-1", "sin-1", rtt_ms=400)
    impact = connect_impact(t, slower, FRA)
    assert [(i.region_a, i.region_b) for i in impact] == [
        (FRA, FRA), (FRA, VIR), (FRA, SIN), (VIR, VIR), (VIR, SIN), (SIN, SIN),
    ]  # fmt: skip
    by_pair = {(i.region_a, i.region_b): i for i in impact}
    fra_sin = by_pair[(FRA, SIN)]
    assert fra_sin.before_ms == pytest.approx(predict_connect(t, FRA, FRA, SIN).total_ms)
    assert fra_sin.after_ms == pytest.approx(predict_connect(slower, FRA, FRA, SIN).total_ms)
    assert fra_sin.changed and not by_pair[(FRA, VIR)].changed
    assert fra_sin.over(fra_sin.after_ms - 1) and not fra_sin.over(fra_sin.after_ms)


def test_impact_of_adding_and_removing_regions() -> None:
    t = base()
    two = default_topology((FRA, VIR))
    impact = {(i.region_a, i.region_b): i for i in connect_impact(t, two, FRA)}
    assert impact[(FRA, SIN)].after_ms is None and impact[(FRA, SIN)].before_ms is not None
    grown = {(i.region_a, i.region_b): i for i in connect_impact(two, t, FRA)}
    assert grown[(VIR, SIN)].before_ms is None and grown[(VIR, SIN)].after_ms is not None
    cut = t.with_link("fra-1", "sin-1", up=False).with_link("vir-1", "sin-1", up=False)
    cut_impact = {(i.region_a, i.region_b): i for i in connect_impact(t, cut, FRA)}
    after = cut_impact[(FRA, SIN)].after_ms
    assert after is not None and math.isinf(after) and cut_impact[(FRA, SIN)].over(600)
    with pytest.raises(ValueError, match="matchmaker region 'Mars'"):
        connect_impact(t, cut, "Mars")


# ---- applying a file ------------------------------------------------------------


def registered(t: Topology, *edge_ids: str) -> Topology:
    for i, edge_id in enumerate(edge_ids):
        t = t.with_edge_addresses(
            edge_id,
            control_address=f"127.0.0.1:{7000 + i}",
            backbone_address=f"127.0.0.1:{8000 + i}",
            media_host="127.0.0.1",
        )
    return t


def test_apply_keeps_registrations_and_bumps_the_version() -> None:
    live = registered(base(), "fra-1", "vir-1")
    declared = base().with_edge_state("vir-1", "draining")
    planned = plan_apply(live, declared)
    assert planned.version == live.version + 1
    assert planned.edge("vir-1").state.value == "draining"
    assert planned.edge("fra-1").control_address == "127.0.0.1:7000"
    assert plan_apply(live, base()) is live  # nothing declared differs


def test_apply_refuses_renumbering_and_removing_a_live_edge() -> None:
    live = registered(base(), "fra-1", "vir-1")
    t = base()
    renumbered = Topology(
        t.regions, tuple(e if e.edge_id != "fra-1" else EdgeNode("fra-1", 40, FRA) for e in t.edges), t.links
    )
    without_vir = Topology(
        t.regions,
        tuple(e for e in t.edges if e.edge_id != "vir-1"),
        tuple(ln for ln in t.links if "vir-1" not in (ln.a, ln.b)),
    )
    with pytest.raises(ChangeRefused) as caught:
        plan_apply(live, renumbered)
    assert "edge fra-1: number 1 -> 40" in str(caught.value)
    with pytest.raises(ChangeRefused, match="edge vir-1 is registered and active: drain it"):
        plan_apply(live, without_vir)
    # Down (or never registered): removing it cuts nothing.
    assert plan_apply(live.with_edge_state("vir-1", "down"), without_vir).find_edge("vir-1") is None
    without_sin = Topology(
        t.regions,
        tuple(e for e in t.edges if e.edge_id != "sin-1"),
        tuple(ln for ln in t.links if "sin-1" not in (ln.a, ln.b)),
    )
    assert plan_apply(live, without_sin).find_edge("sin-1") is None


def test_addresses_in_a_file_are_not_registrations() -> None:
    live = registered(base(), "fra-1")
    t = base()
    declared = Topology(
        t.regions,
        tuple(
            replace(e, control_address="10.0.0.9:1", backbone_address="10.0.0.9:2", media_host="10.0.0.9")
            for e in t.edges
        ),
        t.links,
    )
    planned = plan_apply(live, declared)
    assert planned.edge("fra-1").control_address == "127.0.0.1:7000"  # the registered one
    assert not planned.edge("vir-1").registered  # a file cannot register an edge
