"""Topology files: parsing, every problem with its line and field, round trips, the shipped world file and schema."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.topology import EdgeState, Topology, TopologyError, world_topology
from duet.routing.topology_file import (
    TopologyFileError,
    dump_topology,
    load_topology_file,
    load_world_topology,
    parse_topology,
    schema_text,
    world_topology_path,
)
from tests.routing.strategies import topologies

GOOD = textwrap.dedent(
    """\
    # a small topology
    regions:
    - Frankfurt
    - {name: Lab, lat: 52.5, lon: 13.4}
    edges:
    - {edge_id: fra-1, number: 1, region: Frankfurt}
    - {edge_id: lab-1, number: 2, region: Lab, capacity: 50, state: draining}
    links:
    - {a: fra-1, b: lab-1, rtt_ms: 12.5, loss: 0.01, up: false}
    """
)


def declared(t: Topology) -> Topology:
    """What a file can say about a topology: no addresses, version 1."""
    edges = [replace(e, control_address="", backbone_address="", media_host="") for e in t.edges]
    return Topology(t.regions, tuple(edges), t.links, 1)


def test_a_good_file_gives_its_topology() -> None:
    t = parse_topology(GOOD)
    assert [r.name for r in t.regions] == ["Frankfurt", "Lab"]
    assert t.region("Frankfurt").lat == pytest.approx(50.11, abs=0.01)  # a shipped region's site
    lab = t.edge("lab-1")
    assert (lab.capacity, lab.state, t.edge("fra-1").capacity) == (50, EdgeState.DRAINING, 100)
    link = t.link("lab-1", "fra-1")
    assert link is not None and (link.rtt_ms, link.loss, link.up) == (12.5, 0.01, False)


def _marked(text: str) -> tuple[str, int, int]:
    """The text without its ^ marker, and the 1-based line and column the marker stood at."""
    at = text.index("^")
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    return text.replace("^", "", 1), line, column


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        # new: the replacement, with ^ where the problem must be pointed at (a value, or a field's name).
        ("capacity: 50", "capacity: ^-5", "edges[1].capacity", "must be an integer >= 1, got -5"),
        ("capacity: 50", "capacity: ^lots", "edges[1].capacity", "must be an integer >= 1, got 'lots'"),
        ("state: draining", "state: ^drained", "edges[1].state", "must be one of active, draining, down"),
        ("region: Lab,", "region: ^Labb,", "edges[1].region", "region 'Labb' is not declared under regions"),
        ("number: 2", "number: ^1", "edges[1].number", "number 1 is already used by edge 'fra-1'"),
        ("number: 2", "number: ^70000", "edges[1].number", "must be an integer in 1..65535"),
        ("edge_id: lab-1", "edge_id: ^fra-1", "edges[1].edge_id", "edge 'fra-1' is declared twice"),
        ("edge_id: lab-1", "edge_id: ^lab 1", "edges[1].edge_id", "must not contain spaces"),
        ("lat: 52.5", "lat: ^152.5", "regions[1].lat", "must be a number in -90..90, got 152.5"),
        ("- Frankfurt", "- ^Frankfort", "regions[0]", "unknown region 'Frankfort'"),
        ("rtt_ms: 12.5", "rtt_ms: ^0", "links[0].rtt_ms", "must be a number > 0, got 0"),
        ("loss: 0.01", "loss: ^2", "links[0].loss", "must be a number in 0..1, got 2"),
        ("up: false", "up: ^maybe", "links[0].up", "must be true or false, got 'maybe'"),
        ("b: lab-1", "b: ^lab-2", "links[0].b", "edge 'lab-2' is not declared under edges"),
        ("b: lab-1", "b: ^fra-1", "links[0].b", "a link joins two different edges"),
        ("capacity: 50", "capacity: 50, ^colour: red", "edges[1].colour", "unknown field (allowed: "),
        ("capacity: 50", "capacity: 50, ^capacity: 60", "edges[1].capacity", "given twice"),
        ("- {edge_id: fra-1, ", "- ^{", "edges[0].edge_id", "is required"),
        ("{name: Lab,", "{name: ^no,", "regions[1].name", "quote it"),
    ],
)
def test_each_bad_field_is_named_with_its_line_and_column(old: str, new: str, field: str, message: str) -> None:
    assert old in GOOD
    text, line, column = _marked(GOOD.replace(old, new, 1))
    with pytest.raises(TopologyFileError) as caught:
        parse_topology(text, "lab.yaml")
    problems = caught.value.file_problems
    assert any((p.line, p.column, p.field) == (line, column, field) and message in p.message for p in problems), (
        problems
    )
    rendered = str(caught.value)
    assert rendered.startswith("lab.yaml: ") and f"line {line}, column {column}: {field}: " in rendered


def test_every_problem_is_reported_at_once() -> None:
    bad = (
        GOOD.replace("capacity: 50", "capacity: 0")
        .replace("rtt_ms: 12.5", "rtt_ms: -1")
        .replace("lon: 13.4", "lon: 213.4")
    )
    with pytest.raises(TopologyFileError) as caught:
        parse_topology(bad)
    assert [p.field for p in caught.value.file_problems] == ["regions[1].lon", "edges[1].capacity", "links[0].rtt_ms"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("regions: [Frankfurt\nedges: []\n", 2, "not valid YAML"),
        ("", None, "the file is empty"),
        ("- just\n- a list\n", 1, "a topology file is a mapping"),
        ("regions: []\n", 1, "is required"),
        ("regions: Frankfurt\nedges: []\n", 1, "must be a list of regions"),
        ("regions: []\nedges: []\nlinks: star\n", 3, 'must be a list of links or the word "full_mesh"'),
        ("regions: []\nedges: []\nextra: 1\n", 3, "unknown field"),
        ("regions: [!!python/object:os.system x]\nedges: []\n", 1, "cannot read this value"),
    ],
)
def test_documents_that_are_not_topologies(text: str, line: int | None, message: str) -> None:
    with pytest.raises(TopologyFileError) as caught:
        parse_topology(text)
    first = caught.value.file_problems[0]
    assert message in first.message and first.line == line, caught.value.file_problems


def test_file_errors_are_topology_errors_so_existing_handlers_catch_them() -> None:
    with pytest.raises(TopologyError):
        parse_topology("regions: []\n")
    assert issubclass(TopologyFileError, ValueError)


def test_full_mesh_and_default_rtts() -> None:
    t = parse_topology(GOOD.split("links:")[0] + "links: full_mesh\n")
    link = t.link("fra-1", "lab-1")
    assert link is not None and link.rtt_ms > 0 and link.up


def test_a_json_topology_file_still_loads(tmp_path: Path) -> None:
    # Files written before the YAML format (Topology.to_json) load unchanged: JSON is YAML.
    t = world_topology()
    path = tmp_path / "old.json"
    path.write_text(t.to_json())
    assert load_topology_file(path) == t


def test_an_unreadable_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyFileError, match="cannot read the file"):
        load_topology_file(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"regions: [M\xfcnchen]\n")
    with pytest.raises(TopologyFileError, match="not UTF-8"):
        load_topology_file(tmp_path / "latin1.yaml")


@settings(max_examples=60, deadline=None)
@given(topologies(min_edges=1, max_edges=6))
def test_round_trip_file_topology_file(t: Topology) -> None:
    text = dump_topology(t, header=["a header", ""], registrations=True)
    back = parse_topology(text)
    assert back == declared(t)
    assert dump_topology(back) == dump_topology(t)  # and the file is stable


@settings(max_examples=60, deadline=None)
@given(topologies(min_edges=1, max_edges=4), st.data())
def test_a_corrupted_field_is_reported_on_its_own_line(t: Topology, data: st.DataObject) -> None:
    text = dump_topology(t)
    lines = text.splitlines()
    edge_lines = [i for i, line in enumerate(lines) if line.startswith("- {edge_id:")]
    i = data.draw(st.sampled_from(edge_lines))
    field, bad = data.draw(
        st.sampled_from([("capacity", "0"), ("state", "sleeping"), ("number", "-3"), ("region", "Atlantis")])
    )
    item = yaml.safe_load(lines[i][2:])
    item[field] = yaml.safe_load(bad)
    lines[i] = "- " + yaml.safe_dump(item, default_flow_style=True, width=10_000).strip()
    with pytest.raises(TopologyFileError) as caught:
        parse_topology("\n".join(lines) + "\n")
    fields = {(p.line, p.field.split(".")[-1]) for p in caught.value.file_problems}
    assert (i + 1, field) in fields, caught.value.file_problems


def test_the_shipped_world_file_is_the_world_topology() -> None:
    path = world_topology_path()
    assert path.name == "world.topology.yaml"
    t = load_topology_file(path)
    assert t == world_topology() == load_world_topology()
    assert len(t.regions) == 13 and len(t.edges) == 13 and len(t.links) == 13 * 12 // 2
    assert "CC BY 4.0" in path.read_text()


def test_the_schema_names_the_fields_the_parser_accepts() -> None:
    schema = json.loads(schema_text())
    props = schema["properties"]
    assert set(props) == {"version", "regions", "edges", "links"}
    assert set(schema["required"]) == {"regions", "edges"}
    edge = props["edges"]["items"]
    assert set(edge["required"]) == {"edge_id", "number", "region"}
    assert set(edge["properties"]) == {
        "edge_id", "number", "region", "capacity", "state", "control_address", "backbone_address", "media_host",
    }  # fmt: skip
    assert edge["properties"]["state"]["enum"] == [s.value for s in EdgeState]
    link = props["links"]["oneOf"][1]["items"]
    assert set(link["properties"]) == {"a", "b", "rtt_ms", "loss", "up"}
    # What the schema allows, the parser accepts: every field with a value of the schema's type.
    text = GOOD.replace("capacity: 50", "capacity: 50, control_address: '', backbone_address: '', media_host: ''")
    assert parse_topology("version: 3\n" + text).version == 3


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-70000, 70000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["active", "down", "Frankfurt", "e0", "e1", "full_mesh", "no"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(topologies(min_edges=2, max_edges=4), st.data())
def test_whatever_a_field_holds_every_problem_has_a_line(t: Topology, data: st.DataObject) -> None:
    # The file checks catch everything the Topology constructor would refuse, so no problem
    # is ever reported without the line it is on.
    doc = json.loads(t.to_json())
    section = data.draw(st.sampled_from([s for s in ("regions", "edges", "links") if doc[s]]))
    item = data.draw(st.sampled_from(doc[section]))
    key = data.draw(st.sampled_from(sorted(item)))
    item[key] = data.draw(junk)
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        parse_topology(text)
    except TopologyFileError as exc:
        assert all(p.line is not None for p in exc.file_problems), exc.file_problems
