from __future__ import annotations

import json
import statistics

import pytest
from hypothesis import given, settings

from duet.routing.distance import great_circle_km, prior_rtt_ms
from duet.routing.reference import (
    INTRA_REGION_RTT_MS,
    measured_rtt_ms,
    region_sites,
    rtt_attribution,
    rtt_matrix,
)
from duet.routing.topology import (
    EdgeNode,
    EdgeState,
    Link,
    Region,
    Topology,
    TopologyError,
    UnknownEdge,
    default_topology,
    reference_rtt_ms,
    world_topology,
)
from tests.routing.strategies import topologies

ALL_REGIONS = [
    "Tokyo", "Seoul", "HongKong", "Singapore", "Pune(~Mumbai)", "Dubai", "Frankfurt",
    "London", "Virginia", "Washington(WUS2)", "SaoPaulo", "Sydney", "Johannesburg",
]  # fmt: skip


# ---- reference data ---------------------------------------------------------


def test_rtt_matrix_has_all_13_regions_every_pair_and_is_symmetric() -> None:
    m = rtt_matrix()
    assert sorted(m) == sorted(ALL_REGIONS)
    for a in ALL_REGIONS:
        assert a not in m[a], "no self pairs in the matrix"
        assert sorted(m[a]) == sorted(r for r in ALL_REGIONS if r != a), f"{a} misses pairs"
        for b in m[a]:
            assert m[a][b] == m[b][a] > 0


def test_region_sites_match_matrix_keys_and_prefixes() -> None:
    sites = region_sites()
    assert list(sites) == ALL_REGIONS
    prefixes = {name: s.edge_prefix for name, s in sites.items()}
    assert prefixes == {
        "Tokyo": "tyo", "Seoul": "seo", "HongKong": "hkg", "Singapore": "sin", "Pune(~Mumbai)": "pnq",
        "Dubai": "dxb", "Frankfurt": "fra", "London": "lon", "Virginia": "vir", "Washington(WUS2)": "wus",
        "SaoPaulo": "gru", "Sydney": "syd", "Johannesburg": "jnb",
    }  # fmt: skip


def test_region_coordinates_agree_with_measured_inflation() -> None:
    # The reference says measured RTTs are a median ~1.83x the fibre floor
    # (1 ms per 100 km). Wrong coordinates (e.g. swapped lat/lon) break this.
    sites, m = region_sites(), rtt_matrix()
    ratios = []
    for a, row in m.items():
        for b, rtt in row.items():
            km = great_circle_km(sites[a].lat, sites[a].lon, sites[b].lat, sites[b].lon)
            ratios.append(rtt / (2 * km / 200))
    assert 1.5 < statistics.median(ratios) < 2.2
    assert min(ratios) >= 1.0, "nothing beats light in fibre"


def test_reference_rtt_measured_prior_and_same_region() -> None:
    assert reference_rtt_ms("Frankfurt", "Virginia") == 89.0
    assert reference_rtt_ms("Virginia", "Frankfurt") == 89.0
    assert reference_rtt_ms("London", "London") == INTRA_REGION_RTT_MS
    assert measured_rtt_ms("Frankfurt", "Lab") is None
    lab = Region("Lab", 52.52, 13.405)  # Berlin
    km = great_circle_km(lab.lat, lab.lon, region_sites()["Frankfurt"].lat, region_sites()["Frankfurt"].lon)
    assert reference_rtt_ms(lab, "Frankfurt") == pytest.approx(1.8 * 2 * km / 200)
    assert reference_rtt_ms(lab, "Frankfurt") == pytest.approx(prior_rtt_ms(km))
    # A Region object for a shipped region still uses the measurement.
    assert reference_rtt_ms(Region("Frankfurt", 0, 0), "London") == 17.0


def test_reference_rtt_unknown_region() -> None:
    with pytest.raises(ValueError, match="unknown region 'Atlantis'"):
        reference_rtt_ms("Atlantis", "Frankfurt")


def test_attribution_is_carried_by_the_data() -> None:
    text = rtt_attribution()
    assert "CC BY 4.0" in text and "Azure network round-trip latency statistics" in text


# ---- default topologies -------------------------------------------------------


def test_default_topology() -> None:
    t = default_topology()
    assert [(e.edge_id, e.number, e.region) for e in t.edges] == [
        ("fra-1", 1, "Frankfurt"),
        ("vir-1", 2, "Virginia"),
        ("sin-1", 3, "Singapore"),
    ]
    assert all(e.state is EdgeState.ACTIVE and not e.registered for e in t.edges)
    assert t.link("fra-1", "vir-1").rtt_ms == 89
    assert t.link("sin-1", "fra-1").rtt_ms == 156
    assert t.link("vir-1", "sin-1").rtt_ms == 225
    assert len(t.links) == 3 and t.version == 1


def test_default_topology_several_edges_per_region() -> None:
    t = default_topology(("London", "Sydney"), edges_per_region=2)
    assert [e.edge_id for e in t.edges] == ["lon-1", "lon-2", "syd-1", "syd-2"]
    assert [e.number for e in t.edges] == [1, 2, 3, 4]
    assert len(t.links) == 6
    assert t.link("lon-1", "lon-2").rtt_ms == INTRA_REGION_RTT_MS
    assert t.link("lon-2", "syd-1").rtt_ms == 258


def test_world_topology() -> None:
    t = world_topology()
    assert len(t.regions) == 13 and len(t.edges) == 13 and len(t.links) == 78
    assert {e.edge_id.split("-")[0] for e in t.edges} == {s.edge_prefix for s in region_sites().values()}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"regions": ("Frankfurt", "Atlantis")}, "unknown region 'Atlantis'"),
        ({"regions": ("Frankfurt", "Frankfurt")}, "listed twice"),
        ({"edges_per_region": 0}, "edges_per_region must be >= 1"),
        ({"regions": ()}, "at least one region"),
    ],
)
def test_default_topology_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        default_topology(**kwargs)


# ---- validation ----------------------------------------------------------------

FRA = Region("Frankfurt", 50.1, 8.7)


def _topo(edges: list[EdgeNode], links: list[Link] = (), regions=(FRA,)) -> Topology:
    return Topology(tuple(regions), tuple(edges), tuple(links))


@pytest.mark.parametrize(
    ("edges", "links", "message"),
    [
        ([EdgeNode("a", 1, "Mars")], [], "edge 'a': unknown region 'Mars'"),
        ([EdgeNode("a", 1, "Frankfurt"), EdgeNode("a", 2, "Frankfurt")], [], "duplicate edge id 'a'"),
        ([EdgeNode("a", 1, "Frankfurt"), EdgeNode("b", 1, "Frankfurt")], [], "duplicate edge number 1"),
        ([EdgeNode("a", 0, "Frankfurt")], [], "number must be an integer in 1.."),
        ([EdgeNode("a", 2**32, "Frankfurt")], [], "number must be an integer in 1.."),
        # The backbone header carries edge numbers in 16 bits: 70000 must not validate.
        ([EdgeNode("a", 70000, "Frankfurt")], [], "number must be an integer in 1..65535"),
        ([EdgeNode("a", 1, "Frankfurt", capacity=0)], [], "capacity must be a positive integer"),
        ([EdgeNode("", 1, "Frankfurt")], [], "edge id must be a non-empty string"),
        ([EdgeNode("a", 1, "Frankfurt")], [Link("a", "zz", 5)], "unknown edge 'zz'"),
        ([EdgeNode("a", 1, "Frankfurt")], [Link("a", "a", 5)], "links an edge to itself"),
        (
            [EdgeNode("a", 1, "Frankfurt"), EdgeNode("b", 2, "Frankfurt")],
            [Link("a", "b", -3)],
            "rtt_ms must be a finite number > 0",
        ),
        (
            [EdgeNode("a", 1, "Frankfurt"), EdgeNode("b", 2, "Frankfurt")],
            [Link("a", "b", 0)],
            "rtt_ms must be a finite number > 0",
        ),
        (
            [EdgeNode("a", 1, "Frankfurt"), EdgeNode("b", 2, "Frankfurt")],
            [Link("a", "b", float("nan"))],
            "rtt_ms must be a finite number > 0",
        ),
        (
            [EdgeNode("a", 1, "Frankfurt"), EdgeNode("b", 2, "Frankfurt")],
            [Link("a", "b", 5, loss=1.5)],
            r"loss must be a fraction in \[0, 1\]",
        ),
        (
            [EdgeNode("a", 1, "Frankfurt"), EdgeNode("b", 2, "Frankfurt")],
            [Link("a", "b", 5), Link("b", "a", 6)],
            "duplicate link 'b'<->'a'",
        ),
    ],
)
def test_validation_errors(edges: list[EdgeNode], links: list[Link], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        _topo(edges, links)


def test_validation_reports_every_problem_and_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        _topo([EdgeNode("a", 1, "Mars"), EdgeNode("b", 1, "Frankfurt")], [Link("a", "c", -1)])
    err = info.value
    assert isinstance(err, TopologyError)
    assert len(err.problems) == 4, err.problems
    assert str(err).startswith("invalid topology: ")


def test_region_validation() -> None:
    with pytest.raises(TopologyError, match="duplicate region 'Frankfurt'"):
        _topo([], regions=(FRA, FRA))
    with pytest.raises(TopologyError, match="lat/lon out of range"):
        _topo([], regions=(Region("X", 91, 0),))


def test_edge_state_accepts_strings_and_rejects_unknown() -> None:
    assert EdgeNode("a", 1, "Frankfurt", state="draining").state is EdgeState.DRAINING
    with pytest.raises(TopologyError, match="unknown state 'sleeping'"):
        EdgeNode("a", 1, "Frankfurt", state="sleeping")


# ---- lookups and changes --------------------------------------------------------


def test_lookups() -> None:
    t = default_topology(("Frankfurt", "Virginia"), edges_per_region=2)
    assert t.edge("vir-2").number == 4
    assert t.edge_by_number(3).edge_id == "vir-1"
    assert t.find_edge("nope") is None
    assert [e.edge_id for e in t.edges_in_region("Frankfurt")] == ["fra-1", "fra-2"]
    assert t.link("vir-2", "fra-1") is t.link("fra-1", "vir-2")
    assert t.link("fra-1", "nope") is None
    assert {ln.other("fra-1") for ln in t.links_of("fra-1")} == {"fra-2", "vir-1", "vir-2"}
    assert t.region("Virginia").lat == pytest.approx(37.3719)
    with pytest.raises(UnknownEdge, match="unknown edge 'nope'"):
        t.edge("nope")
    with pytest.raises(UnknownEdge, match="unknown edge number 99"):
        t.edge_by_number(99)
    with pytest.raises(LookupError):
        t.region("Mars")


def test_with_edge_addresses_bumps_version_and_registers() -> None:
    t = default_topology()
    t2 = t.with_edge_addresses(
        "fra-1", control_address="127.0.0.1:7001", backbone_address="127.0.0.1:9001", media_host="127.0.0.1"
    )
    assert t2.version == t.version + 1
    assert t2.edge("fra-1").registered and not t.edge("fra-1").registered  # t is unchanged
    assert t2.edge("fra-1").backbone_address == "127.0.0.1:9001"
    same = t2.with_edge_addresses(
        "fra-1", control_address="127.0.0.1:7001", backbone_address="127.0.0.1:9001", media_host="127.0.0.1"
    )
    assert same is t2, "no change, no new version"
    t3 = t2.with_edge_state("fra-1", "draining").with_edge_addresses(
        "fra-1", control_address="h:1", backbone_address="h:2", media_host="h", state=EdgeState.ACTIVE
    )
    assert t3.edge("fra-1").state is EdgeState.ACTIVE and t3.version == t2.version + 2
    with pytest.raises(UnknownEdge):
        t.with_edge_addresses("zz-1", control_address="", backbone_address="", media_host="")


def test_with_link_updates_and_adds() -> None:
    t = default_topology()
    t2 = t.with_link("vir-1", "fra-1", rtt_ms=95.5, loss=0.02)
    ln = t2.link("fra-1", "vir-1")
    assert (ln.rtt_ms, ln.loss, ln.up) == (95.5, 0.02, True) and t2.version == 2
    t3 = t2.with_link("fra-1", "vir-1", up=False)
    assert t3.link("fra-1", "vir-1").up is False and t3.link("fra-1", "vir-1").rtt_ms == 95.5
    with pytest.raises(TopologyError, match="rtt_ms must be a finite number > 0"):
        t.with_link("fra-1", "vir-1", rtt_ms=-1)
    solo = Topology((FRA,), (EdgeNode("a", 1, "Frankfurt"), EdgeNode("b", 2, "Frankfurt")), ())
    with pytest.raises(TopologyError, match="rtt_ms is needed"):
        solo.with_link("a", "b", up=True)
    added = solo.with_link("a", "b", rtt_ms=2)
    assert added.link("b", "a").rtt_ms == 2 and added.version == solo.version + 1


# ---- declarative format ---------------------------------------------------------


def test_dict_and_json_round_trip() -> None:
    t = world_topology().with_edge_state("sin-1", EdgeState.DRAINING).with_link("fra-1", "lon-1", up=False)
    assert Topology.from_dict(t.to_dict()) == t
    assert Topology.from_json(t.to_json()) == t
    doc = json.loads(t.to_json())
    assert doc["edges"][3]["state"] == "draining"


def test_from_dict_shorthands() -> None:
    t = Topology.from_dict(
        {
            "regions": ["Frankfurt", {"name": "Lab", "lat": 52.52, "lon": 13.405}],
            "edges": [
                {"edge_id": "fra-1", "number": 1, "region": "Frankfurt"},
                {"edge_id": "lab-1", "number": 7, "region": "Lab", "state": "draining", "capacity": 10},
            ],
            "links": "full_mesh",
        }
    )
    assert t.version == 1
    assert t.edge("lab-1").state is EdgeState.DRAINING and t.edge("lab-1").capacity == 10
    assert t.link("fra-1", "lab-1").rtt_ms == pytest.approx(reference_rtt_ms(t.region("Lab"), "Frankfurt"))
    t2 = Topology.from_dict({**t.to_dict(), "links": [{"a": "fra-1", "b": "lab-1", "loss": 0.1}]})
    assert t2.link("fra-1", "lab-1").rtt_ms == t.link("fra-1", "lab-1").rtt_ms


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"regions": []}, "missing edges"),
        ({"regions": [], "edges": [], "colour": 1}, "unknown field"),
        ({"regions": ["Atlantis"], "edges": []}, "unknown region 'Atlantis'"),
        ({"regions": ["Frankfurt"], "edges": [{"edge_id": "a", "number": 1}]}, "missing region"),
        ({"regions": ["Frankfurt"], "edges": [{"edge_id": "a", "number": 1, "region": "Frankfurt", "x": 1}]}, "'x'"),
        ({"regions": ["Frankfurt"], "edges": [], "links": "star"}, "full_mesh"),
        ({"regions": "Frankfurt", "edges": []}, "'regions' must be a list"),
        ([], "must be a JSON object"),
    ],
)
def test_from_dict_errors(doc: object, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        Topology.from_dict(doc)


def test_from_json_invalid() -> None:
    with pytest.raises(TopologyError, match="not valid JSON"):
        Topology.from_json("{")


@settings(max_examples=50, deadline=None)
@given(topologies())
def test_round_trip_property(t: Topology) -> None:
    assert Topology.from_json(t.to_json()) == t
