"""The connect-time model: its parts by hand, and its properties (monotone in RTT, symmetric in the pair)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.connect_model import (
    BOUND_FIXED_MS,
    BOUND_SCALE,
    FRAME_INTERVAL_MS,
    PROCESSING_MS,
    connect_bound_ms,
    predict_all_pairs,
    predict_connect,
    region_pairs,
)
from duet.routing.distance import great_circle_km, prior_rtt_ms
from duet.routing.reference import reference_rtt_ms
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology, world_topology
from tests.routing.strategies import REGIONS, topologies

FRA, VIR, SIN = "Frankfurt", "Virginia", "Singapore"


def three(**links: float) -> Topology:
    """fra-1, vir-1, sin-1 in their regions; links named like fra_vir=89 (all up, lossless)."""
    regions = tuple(
        Region(name, *coords) for name, coords in ((FRA, (50.11, 8.68)), (VIR, (37.37, -79.82)), (SIN, (1.28, 103.83)))
    )
    edges = (EdgeNode("fra-1", 1, FRA), EdgeNode("vir-1", 2, VIR), EdgeNode("sin-1", 3, SIN))
    return Topology(regions, edges, tuple(Link(f"{k[:3]}-1", f"{k[4:]}-1", v) for k, v in links.items()))


def test_a_pair_is_control_plus_backbone_plus_last_miles_plus_frame_plus_processing() -> None:
    t = three(fra_vir=89, vir_sin=225, fra_sin=120)
    p = predict_connect(t, FRA, VIR, SIN, last_mile_ms=20)
    # Control from Frankfurt to the farther of vir-1 and sin-1, one way.
    control = max(reference_rtt_ms(t.region(FRA), t.region(VIR)), reference_rtt_ms(t.region(FRA), t.region(SIN))) / 2
    assert p.control_ms == pytest.approx(control)
    assert p.path == ("vir-1", "fra-1", "sin-1")  # 89 + 120 beats the direct 225
    assert p.backbone_ms == pytest.approx((89 + 120) / 2)
    assert p.access_ms == 40
    assert p.total_ms == pytest.approx(control + 104.5 + 40 + FRAME_INTERVAL_MS + PROCESSING_MS)
    assert (p.edge_a, p.edge_b, p.unreachable) == ("vir-1", "sin-1", "")


def test_two_users_of_one_region_share_an_edge_and_no_backbone() -> None:
    p = predict_connect(three(fra_vir=89), FRA, FRA, FRA)
    assert p.path == ("fra-1",) and p.backbone_ms == 0
    assert p.control_ms == pytest.approx(0.5)  # the intra-region RTT, one way
    assert p.total_ms == pytest.approx(0.5 + 30 + FRAME_INTERVAL_MS + PROCESSING_MS)


def test_a_region_whose_edge_is_drained_uses_the_nearest_active_edge_and_a_longer_last_mile() -> None:
    t = three(fra_vir=89, vir_sin=225, fra_sin=120).with_edge_state("fra-1", EdgeState.DRAINING)
    p = predict_connect(t, VIR, FRA, VIR)
    assert p.edge_a == "vir-1"  # the Frankfurt user attaches in Virginia
    fra, vir = t.region(FRA), t.region(VIR)
    extra = prior_rtt_ms(great_circle_km(fra.lat, fra.lon, vir.lat, vir.lon)) / 2
    assert p.access_ms == pytest.approx(30 + extra)
    # The drained edge is no transit either: Virginia <-> Singapore goes direct now.
    assert predict_connect(t, VIR, VIR, SIN).path == ("vir-1", "sin-1")


def test_pairs_that_cannot_connect_say_why() -> None:
    t = three(fra_vir=89)
    p = predict_connect(t, FRA, FRA, SIN)
    assert math.isinf(p.total_ms) and "no route" in p.unreachable
    down = t.with_edge_state("fra-1", "down").with_edge_state("vir-1", "down").with_edge_state("sin-1", "down")
    assert predict_connect(down, FRA, FRA, VIR).unreachable == "no ACTIVE edge takes clients"


def test_bad_arguments() -> None:
    t = three(fra_vir=89)
    with pytest.raises(ValueError, match="matchmaker region 'Mars' is not in the topology"):
        predict_connect(t, "Mars", FRA, VIR)
    with pytest.raises(ValueError, match="region 'Tokyo' is not in the topology"):
        predict_connect(t, FRA, FRA, "Tokyo")
    with pytest.raises(ValueError, match="last_mile_ms"):
        predict_connect(t, FRA, FRA, VIR, last_mile_ms=-1)


def test_all_pairs_covers_every_unordered_pair_once() -> None:
    t = three(fra_vir=89, vir_sin=225, fra_sin=150)
    pairs = region_pairs(t)
    assert pairs == [(FRA, FRA), (FRA, VIR), (FRA, SIN), (VIR, VIR), (VIR, SIN), (SIN, SIN)]
    assert [(p.region_a, p.region_b) for p in predict_all_pairs(t, FRA)] == pairs


lossless = topologies(min_edges=2, max_edges=6).map(
    lambda t: Topology(t.regions, t.edges, tuple(replace(ln, loss=0.0) for ln in t.links), t.version)
)


@settings(max_examples=120, deadline=None)
@given(lossless, st.data())
def test_raising_a_link_rtt_never_lowers_a_prediction(t: Topology, data: st.DataObject) -> None:
    if not t.links:
        return
    link = data.draw(st.sampled_from(t.links))
    more = data.draw(st.floats(0.1, 500.0))
    slower = t.with_link(link.a, link.b, rtt_ms=link.rtt_ms + more)
    region = data.draw(st.sampled_from(REGIONS)).name
    for before, after in zip(predict_all_pairs(t, region), predict_all_pairs(slower, region), strict=True):
        assert after.total_ms >= before.total_ms - 1e-9, (before, after)


@settings(max_examples=120, deadline=None)
@given(lossless, st.sampled_from(REGIONS), st.sampled_from(REGIONS), st.sampled_from(REGIONS), st.floats(0, 100))
def test_a_pair_predicts_the_same_both_ways(
    t: Topology, matchmaker: Region, a: Region, b: Region, last_mile: float
) -> None:
    ab = predict_connect(t, matchmaker.name, a.name, b.name, last_mile_ms=last_mile)
    ba = predict_connect(t, matchmaker.name, b.name, a.name, last_mile_ms=last_mile)
    assert ab.total_ms == pytest.approx(ba.total_ms) or (math.isinf(ab.total_ms) and math.isinf(ba.total_ms))
    assert ab.path == tuple(reversed(ba.path)) or ab.backbone_ms == pytest.approx(ba.backbone_ms)


@settings(max_examples=60, deadline=None)
@given(topologies(min_edges=1, max_edges=6), st.sampled_from(REGIONS), st.floats(0, 50), st.floats(0, 50))
def test_a_longer_last_mile_adds_exactly_twice_its_growth(
    t: Topology, region: Region, mile: float, growth: float
) -> None:
    for p, q in zip(
        predict_all_pairs(t, region.name, last_mile_ms=mile),
        predict_all_pairs(t, region.name, last_mile_ms=mile + growth),
        strict=True,
    ):
        if p.unreachable:
            assert q.unreachable == p.unreachable
        else:
            assert q.total_ms == pytest.approx(p.total_ms + 2 * growth)


def test_the_bound_adds_a_margin_in_proportion_to_the_delays_and_a_fixed_one() -> None:
    world = world_topology()
    p = predict_connect(world, "Frankfurt", "Sydney", "Johannesburg")
    one_way = p.control_ms + p.backbone_ms + p.access_ms
    assert p.one_way_ms == pytest.approx(one_way)
    assert connect_bound_ms(p) == pytest.approx(BOUND_FIXED_MS + BOUND_SCALE * one_way + p.frame_ms)
    assert connect_bound_ms(p, scale=1, fixed_ms=p.processing_ms) == pytest.approx(p.total_ms)
    # Within one region there is no backbone: the bound is mostly the fixed allowance.
    same = predict_connect(world, "Frankfurt", "Tokyo", "Tokyo")
    assert connect_bound_ms(same) == pytest.approx(BOUND_FIXED_MS + BOUND_SCALE * same.one_way_ms + same.frame_ms)
    for bad in ({"scale": 0.9}, {"scale": math.nan}, {"fixed_ms": -1.0}, {"fixed_ms": math.inf}):
        with pytest.raises(ValueError, match="must be a finite number"):
            connect_bound_ms(p, **bad)
    cut = Topology(world.regions, world.edges, (), 1)  # no links: no route between two regions
    assert connect_bound_ms(predict_connect(cut, "Frankfurt", "Sydney", "Johannesburg")) == math.inf


@settings(max_examples=50, deadline=None)
@given(topologies())
def test_the_bound_is_never_under_the_prediction(topology: Topology) -> None:
    for p in predict_all_pairs(topology, topology.regions[0].name):
        assert connect_bound_ms(p) >= p.total_ms or math.isinf(p.total_ms)
