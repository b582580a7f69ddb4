from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.distance import great_circle_km
from duet.routing.geo import LocateResult, Location
from duet.routing.ingress import SCORE_FLOOR_MS, NoEdgeAvailable, estimated_rtt_ms, load_factor, pick_ingress
from duet.routing.topology import EdgeState, Topology, default_topology, world_topology
from tests.routing.strategies import topologies

FRANKFURT = Location(50.11, 8.68, "DE", "Frankfurt am Main")
SINGAPORE_ISH = Location(1.35, 103.82, "SG", "Singapore")
BERLIN = Location(52.52, 13.405, "DE", "Berlin")


def register_all(t: Topology) -> Topology:
    for e in t.edges:
        t = t.with_edge_addresses(
            e.edge_id, control_address=f"{e.edge_id}:1", backbone_address=f"{e.edge_id}:2", media_host="h"
        )
    return t


def test_nearest_edge_by_distance_estimate() -> None:
    t = default_topology()
    choice = pick_ingress(t, SINGAPORE_ISH, default_region="Frankfurt")
    assert choice.edge.edge_id == "sin-1" and choice.client_region == "Singapore"
    sin = t.region("Singapore")
    km = great_circle_km(SINGAPORE_ISH.lat, SINGAPORE_ISH.lon, sin.lat, sin.lon)
    assert choice.estimated_rtt_ms == pytest.approx(1.8 * 2 * km / 200)
    assert choice.reason == f"location; sin-1 by distance estimate ({choice.estimated_rtt_ms:.0f} ms)"


def test_distance_estimate_for_a_far_client_is_plausible() -> None:
    # Berlin -> Virginia edge: ~6,900 km, so ~125 ms with the 1.8x inflation.
    t = default_topology(("Virginia",))
    choice = pick_ingress(t, BERLIN, default_region="Virginia")
    assert 110 < choice.estimated_rtt_ms < 140
    assert choice.client_region == "Virginia"  # nearest region of this topology


def test_client_region_is_nearest_region_even_without_edges_there() -> None:
    t = world_topology().with_edge_state("fra-1", EdgeState.DOWN)
    choice = pick_ingress(t, FRANKFURT, default_region="London")
    assert choice.client_region == "Frankfurt"
    assert choice.edge.edge_id == "lon-1"


def test_probe_rtts_override_estimates() -> None:
    t = default_topology()
    choice = pick_ingress(t, FRANKFURT, probes={"fra-1": 50.0, "vir-1": 5.0}, default_region="Frankfurt")
    assert choice.edge.edge_id == "vir-1"
    assert choice.estimated_rtt_ms == 5.0
    assert "client probe" in choice.reason


def test_unknown_probe_ids_are_ignored() -> None:
    choice = pick_ingress(default_topology(), FRANKFURT, probes={"gone-9": 0.1}, default_region="Frankfurt")
    assert choice.edge.edge_id == "fra-1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probes": {"fra-1": -1.0}}, "probe RTT for edge 'fra-1' must be a finite number >= 0"),
        ({"probes": {"fra-1": math.nan}}, "probe RTT for edge 'fra-1'"),
        ({"loads": {"vir-1": math.inf}}, "load for edge 'vir-1'"),
        ({"default_region": "Atlantis"}, "default region 'Atlantis' is not in the topology"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    kwargs.setdefault("default_region", "Frankfurt")
    with pytest.raises(ValueError, match=message):
        pick_ingress(default_topology(), FRANKFURT, **kwargs)


def test_load_factor() -> None:
    assert load_factor(0, 100) == 1.0
    assert load_factor(80, 100) == 1.0
    assert load_factor(90, 100) == pytest.approx(2.0)
    assert load_factor(100, 100) == pytest.approx(3.0)


def test_load_moves_clients_within_a_region() -> None:
    t = default_topology(("Frankfurt", "Virginia"), edges_per_region=2)
    idle = pick_ingress(t, FRANKFURT, loads={"fra-1": 50}, default_region="Frankfurt")
    assert idle.edge.edge_id == "fra-1", "below 80 % load does not matter; ties go to the lower number"
    busy = pick_ingress(t, FRANKFURT, loads={"fra-1": 95}, default_region="Frankfurt")
    assert busy.edge.edge_id == "fra-2"
    assert "load-weighted: fra-1 is closer but busy" in busy.reason


def test_load_does_not_send_clients_across_an_ocean() -> None:
    t = default_topology()
    choice = pick_ingress(t, Location(49.0, 8.4), loads={"fra-1": 100}, default_region="Frankfurt")
    assert choice.edge.edge_id == "fra-1"


def test_drained_and_down_edges_are_never_picked() -> None:
    t = default_topology().with_edge_state("sin-1", EdgeState.DRAINING)
    assert pick_ingress(t, SINGAPORE_ISH, default_region="Frankfurt").edge.edge_id == "fra-1"
    t = t.with_edge_state("fra-1", EdgeState.DOWN)
    assert pick_ingress(t, SINGAPORE_ISH, default_region="Frankfurt").edge.edge_id == "vir-1"
    # Even a perfect probe does not make a draining edge eligible.
    assert pick_ingress(t, SINGAPORE_ISH, probes={"sin-1": 1.0}, default_region="Frankfurt").edge.edge_id == "vir-1"


def test_no_location_uses_default_region_and_says_why() -> None:
    t = default_topology()
    choice = pick_ingress(t, None, default_region="Singapore")
    assert choice.edge.edge_id == "sin-1" and choice.client_region == "Singapore"
    assert choice.reason.startswith("fallback: no location (default region Singapore)")
    choice = pick_ingress(t, LocateResult(None, "private address"), default_region="Virginia")
    assert choice.edge.edge_id == "vir-1"
    assert choice.reason.startswith("fallback: private address")


def test_no_location_with_default_region_drained_goes_to_nearest_other_region() -> None:
    t = world_topology().with_edge_state("fra-1", EdgeState.DRAINING)
    choice = pick_ingress(t, LocateResult(None, "loopback"), default_region="Frankfurt")
    assert choice.edge.edge_id == "lon-1"
    assert choice.client_region == "Frankfurt"


def test_located_result_passes_through() -> None:
    choice = pick_ingress(default_topology(), LocateResult(SINGAPORE_ISH, "geoip"), default_region="Frankfurt")
    assert choice.edge.edge_id == "sin-1" and choice.reason.startswith("geoip; sin-1")


def test_require_registered() -> None:
    t = default_topology()
    with pytest.raises(NoEdgeAvailable, match="no active and registered edge"):
        pick_ingress(t, SINGAPORE_ISH, default_region="Frankfurt", require_registered=True)
    t = t.with_edge_addresses("vir-1", control_address="c:1", backbone_address="b:2", media_host="m")
    choice = pick_ingress(t, SINGAPORE_ISH, default_region="Frankfurt", require_registered=True)
    assert choice.edge.edge_id == "vir-1"


def test_nothing_active_raises() -> None:
    t = default_topology()
    for e in t.edges:
        t = t.with_edge_state(e.edge_id, EdgeState.DOWN if e.number % 2 else EdgeState.DRAINING)
    with pytest.raises(NoEdgeAvailable, match="no active edge"):
        pick_ingress(t, FRANKFURT, default_region="Frankfurt")


# ---- properties -----------------------------------------------------------------

locations = st.builds(Location, st.floats(-90, 90, allow_nan=False), st.floats(-180, 180, allow_nan=False)) | st.none()
measurements = st.floats(0, 500, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(topologies(min_edges=1), locations, st.data())
def test_ingress_only_picks_active_edges_and_the_best_score(t: Topology, location, data: st.DataObject) -> None:
    ids = [e.edge_id for e in t.edges]
    probes = data.draw(st.dictionaries(st.sampled_from(ids), measurements))
    loads = data.draw(st.dictionaries(st.sampled_from(ids), measurements))
    region = data.draw(st.sampled_from([r.name for r in t.regions]))
    active = [e for e in t.edges if e.state is EdgeState.ACTIVE]
    if not active:
        with pytest.raises(NoEdgeAvailable):
            pick_ingress(t, location, probes=probes, loads=loads, default_region=region)
        return
    choice = pick_ingress(t, location, probes=probes, loads=loads, default_region=region)
    assert choice.edge.state is EdgeState.ACTIVE
    assert choice.estimated_rtt_ms >= 0
    if choice.edge.edge_id in probes:
        assert choice.estimated_rtt_ms == probes[choice.edge.edge_id]
    # No active edge has a better load-weighted score than the chosen one.
    origin = Location(t.region(region).lat, t.region(region).lon) if location is None else location

    def score(e) -> float:
        rtt = probes.get(e.edge_id, estimated_rtt_ms(t, origin, e))
        return max(rtt, SCORE_FLOOR_MS) * load_factor(loads.get(e.edge_id, 0.0), e.capacity)

    assert score(choice.edge) <= min(score(e) for e in active) + 1e-9
    # Deterministic: the same inputs give the same answer.
    assert pick_ingress(t, location, probes=probes, loads=loads, default_region=region) == choice
    if location is None:
        assert choice.client_region == region and choice.reason.startswith("fallback: no location")
    else:
        nearest = min(t.regions, key=lambda r: great_circle_km(location.lat, location.lon, r.lat, r.lon))
        assert choice.client_region == nearest.name
