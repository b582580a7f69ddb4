"""Topology files: the declarative format in YAML, every problem reported with its line and field.

The format is the one ``Topology.from_dict`` reads (JSON is a subset of YAML,
so the JSON files written before YAML still load); the schema is shipped as
``routing/data/topology.schema.json`` and described in ``docs/operations.md``::

    regions:
    - {name: Frankfurt, lat: 50.11, lon: 8.68}   # or just: - Frankfurt (a shipped region)
    edges:
    - {edge_id: fra-1, number: 1, region: Frankfurt, capacity: 100, state: active}
    links:                                        # or: links: full_mesh
    - {a: fra-1, b: vir-1, rtt_ms: 89.0, loss: 0.0, up: true}

Parsing keeps the YAML node of every value, so each problem found (a wrong
type, a value out of range, an edge naming an undeclared region, a duplicate
id) names the line, the column and the field path, e.g.
``line 12, column 43: edges[2].capacity: must be an integer > 0, got -5``.
Every problem in the file is reported at once, not just the first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from duet.routing.reference import region_sites
from duet.routing.topology import MAX_EDGE_NUMBER, EdgeState, Topology, TopologyError

__all__ = [
    "WORLD_TOPOLOGY_FILE",
    "FileProblem",
    "TopologyFileError",
    "dump_topology",
    "load_topology_file",
    "load_world_topology",
    "parse_topology",
    "topology_document",
    "world_topology_path",
]

WORLD_TOPOLOGY_FILE = "world.topology.yaml"
SCHEMA_FILE = "topology.schema.json"

FieldPath = tuple[str | int, ...]

_EDGE_REQUIRED = {"edge_id", "number", "region"}
_EDGE_OPTIONAL = {"capacity", "state", "control_address", "backbone_address", "media_host"}
_LINK_REQUIRED = {"a", "b"}
_LINK_OPTIONAL = {"rtt_ms", "loss", "up"}
_TOP_REQUIRED = {"regions", "edges"}
_TOP_OPTIONAL = {"links", "version"}


@dataclass(frozen=True)
class FileProblem:
    """One problem in a topology file: where it is (1-based line and column) and what is wrong."""

    field: str  # e.g. "edges[2].capacity"; "" for the document as a whole
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}: " if self.line is not None else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"


class TopologyFileError(TopologyError):
    """A topology file that does not parse or validate; ``file_problems`` lists each with its line."""

    def __init__(self, problems: Sequence[FileProblem], source: str = "") -> None:
        self.file_problems = list(problems)
        self.source = source
        super().__init__([str(p) for p in self.file_problems])

    def __str__(self) -> str:
        head = f"{self.source}: " if self.source else ""
        n = len(self.file_problems)
        lines = "\n".join(f"  {p}" for p in self.file_problems)
        return f"{head}{n} problem{'s' if n != 1 else ''} in the topology file:\n{lines}"


# ---- YAML with positions ------------------------------------------------------


@dataclass
class _Marks:
    """Where each value (and each mapping key) sits in the text, by field path."""

    values: dict[FieldPath, yaml.Mark] = field(default_factory=dict)
    keys: dict[FieldPath, yaml.Mark] = field(default_factory=dict)

    def at(self, path: FieldPath, *, key: bool = False) -> yaml.Mark | None:
        """The mark of a field's name (``key``) or value; a missing field points at its parent."""
        if key and path in self.keys:
            return self.keys[path]
        for n in range(len(path), -1, -1):
            found = self.values.get(path[:n])
            if found is not None:
                return found
        return None


def _plain(
    node: yaml.Node, path: FieldPath, marks: _Marks, problems: list[tuple[FieldPath, str]], loader: yaml.SafeLoader
) -> Any:
    """Plain data from a composed node, recording where each value and field name is."""
    marks.values[path] = node.start_mark
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path, problems, loader) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                marks.values[(*path, "?")] = key_node.start_mark
                problems.append(((*path, "?"), "field names must be plain words"))
                continue
            marks.keys[(*path, key)] = key_node.start_mark
            if key in out:
                problems.append(((*path, key), "given twice"))
            out[key] = _plain(value_node, (*path, key), marks, problems, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), marks, problems, loader) for i, item in enumerate(node.value)]
    return _scalar(node, path, problems, loader)


def _scalar(node: yaml.Node, path: FieldPath, problems: list[tuple[FieldPath, str]], loader: yaml.SafeLoader) -> Any:
    try:
        return loader.construct_object(node)
    except yaml.YAMLError as exc:  # e.g. a !!python/... tag, which a safe loader refuses
        problems.append((path, f"cannot read this value: {getattr(exc, 'problem', None) or exc}"))
        return None


def _path_text(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# ---- validation -----------------------------------------------------------------


class _Checker:
    """Collects problems by field path; every rule of the format is one method here."""

    def __init__(self) -> None:
        self.problems: list[tuple[FieldPath, str]] = []

    def add(self, path: FieldPath, message: str) -> None:
        self.problems.append((path, message))

    def keys(self, path: FieldPath, item: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
        for name in sorted(required - item.keys()):
            self.add((*path, name), "is required")
        for name in sorted(item.keys() - required - optional):
            allowed = ", ".join(sorted(required | optional))
            self.add((*path, name), f"unknown field (allowed: {allowed})")

    def text(self, path: FieldPath, value: Any, *, spaces: bool = True) -> bool:
        if isinstance(value, bool):
            self.add(path, f"must be text, got {value!r} (YAML reads yes/no/on/off as true/false: quote it)")
            return False
        if not isinstance(value, str) or not value:
            self.add(path, f"must be non-empty text, got {value!r}")
            return False
        if not spaces and any(c.isspace() for c in value):
            self.add(path, f"must not contain spaces, got {value!r}")
            return False
        return True

    def integer(self, path: FieldPath, value: Any, low: int, high: int | None = None) -> bool:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            self.add(path, f"must be an integer {bound}, got {value!r}")
            return False
        return True

    def number(self, path: FieldPath, value: Any, low: float, high: float, *, low_open: bool = False) -> bool:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and value <= high
        if not ok:
            lower = f"> {low:g}" if low_open else f">= {low:g}"
            bound = lower if math.isinf(high) else f"in {low:g}..{high:g}"
            self.add(path, f"must be a number {bound}, got {value!r}")
        return ok


def _check_document(doc: Any) -> list[tuple[FieldPath, str]]:
    c = _Checker()
    if not isinstance(doc, dict):
        c.add((), f"a topology file is a mapping with regions, edges and links, got {type(doc).__name__}")
        return c.problems
    c.keys((), doc, _TOP_REQUIRED, _TOP_OPTIONAL)
    if "version" in doc:
        c.integer(("version",), doc["version"], 0)

    region_names: set[str] = set()
    regions = doc.get("regions")
    if "regions" in doc and not isinstance(regions, list):
        c.add(("regions",), "must be a list of regions")
    for i, item in enumerate(regions if isinstance(regions, list) else []):
        path: FieldPath = ("regions", i)
        name: Any = None
        if isinstance(item, (str, bool)):
            if c.text(path, item):
                name = item
                if item not in region_sites():
                    c.add(
                        path, f"unknown region {item!r}: give name, lat and lon, or one of {', '.join(region_sites())}"
                    )
        elif isinstance(item, dict):
            c.keys(path, item, {"name", "lat", "lon"}, set())
            if "name" in item and c.text((*path, "name"), item["name"]):
                name = item["name"]
            if "lat" in item:
                c.number((*path, "lat"), item["lat"], -90, 90)
            if "lon" in item:
                c.number((*path, "lon"), item["lon"], -180, 180)
        else:
            c.add(path, f"a region is a shipped region's name or a mapping with name, lat, lon; got {item!r}")
        if name is not None:
            if name in region_names:
                c.add(path, f"region {name!r} is declared twice")
            region_names.add(name)

    edge_ids: set[str] = set()
    numbers: dict[int, str] = {}
    edges = doc.get("edges")
    if "edges" in doc and not isinstance(edges, list):
        c.add(("edges",), "must be a list of edges")
    for i, item in enumerate(edges if isinstance(edges, list) else []):
        path = ("edges", i)
        if not isinstance(item, dict):
            c.add(path, f"an edge is a mapping with edge_id, number, region; got {item!r}")
            continue
        c.keys(path, item, _EDGE_REQUIRED, _EDGE_OPTIONAL)
        edge_id: Any = item.get("edge_id")
        if "edge_id" in item and c.text((*path, "edge_id"), edge_id, spaces=False):
            if edge_id in edge_ids:
                c.add((*path, "edge_id"), f"edge {edge_id!r} is declared twice")
            edge_ids.add(edge_id)
        if "number" in item and c.integer((*path, "number"), item["number"], 1, MAX_EDGE_NUMBER):
            other = numbers.get(item["number"])
            if other is not None:
                c.add((*path, "number"), f"number {item['number']} is already used by edge {other!r}")
            else:
                numbers[item["number"]] = str(edge_id)
        if "region" in item and c.text((*path, "region"), item["region"]) and item["region"] not in region_names:
            c.add((*path, "region"), f"region {item['region']!r} is not declared under regions")
        if "capacity" in item:
            c.integer((*path, "capacity"), item["capacity"], 1)
        if "state" in item:
            states = [s.value for s in EdgeState]
            if item["state"] not in states:
                c.add((*path, "state"), f"must be one of {', '.join(states)}, got {item['state']!r}")
        for name in ("control_address", "backbone_address", "media_host"):
            if name in item and not isinstance(item[name], str):
                c.add((*path, name), f"must be text, got {item[name]!r}")

    links = doc.get("links", [])
    if links == "full_mesh":
        return c.problems
    if not isinstance(links, list):
        c.add(("links",), 'must be a list of links or the word "full_mesh"')
        return c.problems
    pairs: set[tuple[str, str]] = set()
    for i, item in enumerate(links):
        path = ("links", i)
        if not isinstance(item, dict):
            c.add(path, f"a link is a mapping with a, b and optionally rtt_ms, loss, up; got {item!r}")
            continue
        c.keys(path, item, _LINK_REQUIRED, _LINK_OPTIONAL)
        ends_ok = True
        for end in ("a", "b"):
            if end not in item or not c.text((*path, end), item[end]):
                ends_ok = False
            elif item[end] not in edge_ids:
                c.add((*path, end), f"edge {item[end]!r} is not declared under edges")
                ends_ok = False
        if ends_ok:
            a, b = item["a"], item["b"]
            if a == b:
                c.add((*path, "b"), f"a link joins two different edges, got {a!r} twice")
            else:
                key = (a, b) if a <= b else (b, a)
                if key in pairs:
                    c.add(path, f"the link {a}<->{b} is declared twice")
                pairs.add(key)
        if "rtt_ms" in item:
            c.number((*path, "rtt_ms"), item["rtt_ms"], 0, math.inf, low_open=True)
        if "loss" in item:
            c.number((*path, "loss"), item["loss"], 0, 1)
        if "up" in item and not isinstance(item["up"], bool):
            c.add((*path, "up"), f"must be true or false, got {item['up']!r}")
    return c.problems


def _located(problems: Sequence[tuple[FieldPath, str]], marks: _Marks | None) -> list[FileProblem]:
    out = []
    for path, message in problems:
        # An unknown or repeated field is best pointed at by its name; anything else by its value.
        mark = None
        if marks is not None:
            mark = marks.at(path, key=message.startswith(("unknown field", "given twice")))
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        out.append(FileProblem(_path_text(path), message, line, column))
    return out


# ---- public API -------------------------------------------------------------------


def parse_topology(text: str, source: str = "") -> Topology:
    """A topology from the text of a file (YAML or JSON); raises ``TopologyFileError`` listing every problem.

    ``source`` (a file name) prefixes the error message.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        problem = FileProblem("", f"not valid YAML: {what}", *((mark.line + 1, mark.column + 1) if mark else ()))
        raise TopologyFileError([problem], source) from None
    except yaml.YAMLError as exc:
        raise TopologyFileError([FileProblem("", f"not valid YAML: {exc}")], source) from None
    if node is None:
        raise TopologyFileError([FileProblem("", "the file is empty: it needs regions, edges and links")], source)
    marks = _Marks()
    structural: list[tuple[FieldPath, str]] = []
    doc = _plain(node, (), marks, structural, yaml.SafeLoader(""))
    problems = structural + _check_document(doc)
    if problems:
        raise TopologyFileError(_located(problems, marks), source)
    try:
        return Topology.from_dict(doc)
    except TopologyError as exc:  # a rule the checks above do not know yet: still reported, without a line
        raise TopologyFileError([FileProblem("", p) for p in exc.problems], source) from None


def load_topology_file(path: str | Path) -> Topology:
    """Parse the topology file at ``path``; raises ``TopologyFileError`` (also for an unreadable file)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyFileError([FileProblem("", f"cannot read the file: {exc.strerror or exc}")], str(p)) from None
    except UnicodeDecodeError:
        raise TopologyFileError([FileProblem("", "the file is not UTF-8 text")], str(p)) from None
    return parse_topology(text, str(p))


def topology_document(topology: Topology) -> dict[str, Any]:
    """The declarative part of a topology as plain data (no version, no registered addresses)."""
    return {
        "regions": [{"name": r.name, "lat": r.lat, "lon": r.lon} for r in topology.regions],
        "edges": [
            {
                "edge_id": e.edge_id,
                "number": e.number,
                "region": e.region,
                "capacity": e.capacity,
                "state": e.state.value,
            }
            for e in topology.edges
        ],
        "links": [{"a": ln.a, "b": ln.b, "rtt_ms": ln.rtt_ms, "loss": ln.loss, "up": ln.up} for ln in topology.links],
    }


def _flow(item: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(item), default_flow_style=True, sort_keys=False, width=1_000_000).strip()


def dump_topology(topology: Topology, *, header: Sequence[str] = (), registrations: bool = False) -> str:
    """The topology as a YAML file that ``parse_topology`` reads back to the same regions, edges and links.

    ``header`` lines become comments at the top; with ``registrations`` each
    edge's registered addresses are added as a comment (they are the running
    service's, not part of the declaration).
    """
    doc = topology_document(topology)
    lines = [f"# {h}" if h else "#" for h in header]
    lines.append("regions:")
    lines += [f"- {_flow(r)}" for r in doc["regions"]]
    lines.append("edges:")
    for e, node in zip(doc["edges"], topology.edges, strict=True):
        line = f"- {_flow(e)}"
        if registrations:
            line += (
                f"  # registered: control {node.control_address}, backbone {node.backbone_address}"
                if node.registered
                else "  # not registered"
            )
        lines.append(line)
    lines.append("links:" if doc["links"] else "links: []")
    lines += [f"- {_flow(ln)}" for ln in doc["links"]]
    return "\n".join(lines) + "\n"


def world_topology_path() -> Path:
    """Where the shipped world topology file is (13 regions, one edge each, measured RTTs): to copy or lint it."""
    return Path(str(resources.files("duet.routing").joinpath("data", WORLD_TOPOLOGY_FILE)))


def load_world_topology() -> Topology:
    """The shipped world topology file, parsed."""
    text = resources.files("duet.routing").joinpath("data", WORLD_TOPOLOGY_FILE).read_text(encoding="utf-8")
    return parse_topology(text, WORLD_TOPOLOGY_FILE)


def schema_text() -> str:
    """The shipped JSON Schema of the file format."""
    return resources.files("duet.routing").joinpath("data", SCHEMA_FILE).read_text(encoding="utf-8")


def iter_problem_lines(error: TopologyError) -> Iterator[str]:
    """Each problem of a topology error on its own line (with line numbers when it came from a file)."""
    if isinstance(error, TopologyFileError):
        yield from (str(p) for p in error.file_problems)
    else:
        yield from error.problems
