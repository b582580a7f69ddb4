"""The topology model: regions, edge nodes, backbone links, and the shipped defaults.

A ``Topology`` is immutable and always valid: the constructor checks it and
raises ``TopologyError`` listing every problem. Changes (an edge registering
its addresses, a drain, a new link measurement) return a new ``Topology`` with
``version`` bumped, so a server can hand snapshots to concurrent readers and
tell watchers what changed by comparing versions.

The declarative file format (``from_dict``/``to_dict``, JSON)::

    {"version": 1,
     "regions": ["Frankfurt", {"name": "Lab", "lat": 52.5, "lon": 13.4}],
     "edges": [{"edge_id": "fra-1", "number": 1, "region": "Frankfurt",
                "capacity": 100, "state": "active"}, ...],
     "links": [{"a": "fra-1", "b": "vir-1", "rtt_ms": 89, "loss": 0.0, "up": true}]
              or "full_mesh"}

A region given as a bare name is looked up among the shipped regions; a link
without ``rtt_ms`` gets ``reference_rtt_ms`` of its edges' regions;
``"links": "full_mesh"`` links every pair of edges that way.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from duet.edge.backbone_wire import EDGE_NUMBER_MAX
from duet.routing.reference import INTRA_REGION_RTT_MS, reference_rtt_ms, region_sites

__all__ = [
    "EdgeNode",
    "EdgeState",
    "Link",
    "Region",
    "Topology",
    "TopologyError",
    "UnknownEdge",
    "default_topology",
    "reference_rtt_ms",
    "world_topology",
]

# Edge numbers travel in the backbone header's 16-bit edge fields; 0 means "not yet
# registered". The topology refuses what the wire cannot carry.
MAX_EDGE_NUMBER = EDGE_NUMBER_MAX


class TopologyError(ValueError):
    """A topology (or a change to one) is invalid. ``problems`` lists each issue."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid topology: " + "; ".join(self.problems))


class UnknownEdge(LookupError):
    """An edge id or number that the topology does not declare."""

    def __init__(self, edge: str | int):
        self.edge = edge
        what = f"edge {edge!r}" if isinstance(edge, str) else f"edge number {edge}"
        super().__init__(f"unknown {what}")


class EdgeState(enum.StrEnum):
    ACTIVE = "active"  # takes new clients, forwards transit traffic
    DRAINING = "draining"  # keeps its own calls; no new clients, never a transit hop
    DOWN = "down"  # out of service: no clients, no routes


@dataclass(frozen=True)
class Region:
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class EdgeNode:
    edge_id: str  # e.g. "fra-1"
    number: int  # compact id used on the backbone wire, 1..MAX_EDGE_NUMBER (65535)
    region: str
    capacity: int = 100  # client legs it is sized for; loads are in the same unit
    state: EdgeState = EdgeState.ACTIVE
    control_address: str = ""  # host:port of its EdgeControl server, once registered
    backbone_address: str = ""  # host:port of its backbone UDP socket, once registered
    media_host: str = ""  # address its WebRTC legs gather candidates on, once registered

    def __post_init__(self) -> None:
        if not isinstance(self.state, EdgeState):
            try:
                object.__setattr__(self, "state", EdgeState(self.state))
            except ValueError:
                raise TopologyError(
                    f"edge {self.edge_id!r}: unknown state {self.state!r} "
                    f"(expected one of {', '.join(s.value for s in EdgeState)})"
                ) from None

    @property
    def registered(self) -> bool:
        """True once the edge process has announced all the addresses it bound."""
        return bool(self.control_address and self.backbone_address and self.media_host)


@dataclass(frozen=True)
class Link:
    """An undirected backbone link between two edges (by edge id)."""

    a: str
    b: str
    rtt_ms: float
    loss: float = 0.0  # packet loss fraction, 0..1
    up: bool = True

    @property
    def key(self) -> tuple[str, str]:
        """Order-independent identity of the edge pair."""
        return (self.a, self.b) if self.a <= self.b else (self.b, self.a)

    def other(self, edge_id: str) -> str:
        return self.b if edge_id == self.a else self.a


def _link_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Topology:
    regions: tuple[Region, ...]
    edges: tuple[EdgeNode, ...]
    links: tuple[Link, ...]
    version: int = 1

    _regions: dict[str, Region] = field(init=False, repr=False, compare=False)
    _edges: dict[str, EdgeNode] = field(init=False, repr=False, compare=False)
    _numbers: dict[int, EdgeNode] = field(init=False, repr=False, compare=False)
    _links: dict[tuple[str, str], Link] = field(init=False, repr=False, compare=False)
    _links_of: dict[str, tuple[Link, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Accept any iterables; store tuples so the snapshot cannot change under readers.
        for name in ("regions", "edges", "links"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate_and_index()

    def _validate_and_index(self) -> None:
        problems: list[str] = []
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 0:
            problems.append(f"version must be an integer >= 0, got {self.version!r}")

        regions: dict[str, Region] = {}
        for r in self.regions:
            if not isinstance(r.name, str) or not r.name:
                problems.append(f"region name must be a non-empty string, got {r.name!r}")
                continue
            if r.name in regions:
                problems.append(f"duplicate region {r.name!r}")
            if not (_finite(r.lat) and -90 <= r.lat <= 90 and _finite(r.lon) and -180 <= r.lon <= 180):
                problems.append(f"region {r.name!r}: lat/lon out of range ({r.lat!r}, {r.lon!r})")
            regions[r.name] = r

        edges: dict[str, EdgeNode] = {}
        numbers: dict[int, EdgeNode] = {}
        for e in self.edges:
            if not isinstance(e.edge_id, str) or not e.edge_id or any(c.isspace() for c in e.edge_id):
                problems.append(f"edge id must be a non-empty string without spaces, got {e.edge_id!r}")
                continue
            label = f"edge {e.edge_id!r}"
            if e.edge_id in edges:
                problems.append(f"duplicate edge id {e.edge_id!r}")
            edges[e.edge_id] = e
            if e.region not in regions:
                problems.append(f"{label}: unknown region {e.region!r}")
            if not isinstance(e.number, int) or isinstance(e.number, bool) or not 1 <= e.number <= MAX_EDGE_NUMBER:
                problems.append(f"{label}: number must be an integer in 1..{MAX_EDGE_NUMBER}, got {e.number!r}")
            elif e.number in numbers:
                problems.append(f"{label}: duplicate edge number {e.number} (also {numbers[e.number].edge_id!r})")
            else:
                numbers[e.number] = e
            if not isinstance(e.capacity, int) or isinstance(e.capacity, bool) or e.capacity <= 0:
                problems.append(f"{label}: capacity must be a positive integer, got {e.capacity!r}")

        links: dict[tuple[str, str], Link] = {}
        links_of: dict[str, list[Link]] = {eid: [] for eid in edges}
        for ln in self.links:
            label = f"link {ln.a!r}<->{ln.b!r}"
            bad = False
            for end in (ln.a, ln.b):
                if end not in edges:
                    problems.append(f"{label}: unknown edge {end!r}")
                    bad = True
            if ln.a == ln.b:
                problems.append(f"{label}: links an edge to itself")
                bad = True
            # RTT must be > 0, not just >= 0: every hop then has a positive cost,
            # which keeps hop-by-hop forwarding on next-hop tables loop-free.
            if not _finite(ln.rtt_ms) or ln.rtt_ms <= 0:
                problems.append(f"{label}: rtt_ms must be a finite number > 0, got {ln.rtt_ms!r}")
            if not _finite(ln.loss) or not 0 <= ln.loss <= 1:
                problems.append(f"{label}: loss must be a fraction in [0, 1], got {ln.loss!r}")
            if not isinstance(ln.up, bool):
                problems.append(f"{label}: up must be true or false, got {ln.up!r}")
            if bad:
                continue
            if ln.key in links:
                problems.append(f"duplicate {label}")
                continue
            links[ln.key] = ln
            links_of[ln.a].append(ln)
            links_of[ln.b].append(ln)

        if problems:
            raise TopologyError(problems)
        object.__setattr__(self, "_regions", regions)
        object.__setattr__(self, "_edges", edges)
        object.__setattr__(self, "_numbers", numbers)
        object.__setattr__(self, "_links", links)
        object.__setattr__(self, "_links_of", {k: tuple(v) for k, v in links_of.items()})

    # ---- lookups -------------------------------------------------------------

    def region(self, name: str) -> Region:
        try:
            return self._regions[name]
        except KeyError:
            raise LookupError(f"unknown region {name!r}") from None

    def has_region(self, name: str) -> bool:
        return name in self._regions

    def edge(self, edge_id: str) -> EdgeNode:
        """The edge with this id; raises ``UnknownEdge``."""
        try:
            return self._edges[edge_id]
        except KeyError:
            raise UnknownEdge(edge_id) from None

    def find_edge(self, edge_id: str) -> EdgeNode | None:
        return self._edges.get(edge_id)

    def edge_by_number(self, number: int) -> EdgeNode:
        """The edge with this wire number; raises ``UnknownEdge``."""
        try:
            return self._numbers[number]
        except KeyError:
            raise UnknownEdge(number) from None

    def edges_in_region(self, region: str) -> tuple[EdgeNode, ...]:
        return tuple(e for e in self.edges if e.region == region)

    def link(self, a: str, b: str) -> Link | None:
        """The link between two edges in either direction, or None."""
        return self._links.get(_link_key(a, b))

    def links_of(self, edge_id: str) -> tuple[Link, ...]:
        """Links touching an edge; raises ``UnknownEdge``."""
        self.edge(edge_id)
        return self._links_of[edge_id]

    # ---- changes (each returns a new Topology, version bumped if anything changed)

    def _changed(self, *, edges: Iterable[EdgeNode] | None = None, links: Iterable[Link] | None = None) -> Topology:
        new_edges = self.edges if edges is None else tuple(edges)
        new_links = self.links if links is None else tuple(links)
        if new_edges == self.edges and new_links == self.links:
            return self
        return Topology(self.regions, new_edges, new_links, self.version + 1)

    def _with_edge(self, edge_id: str, **changes: Any) -> Topology:
        old = self.edge(edge_id)
        new = replace(old, **changes)
        return self._changed(edges=(new if e.edge_id == edge_id else e for e in self.edges))

    def with_edge_addresses(
        self,
        edge_id: str,
        *,
        control_address: str,
        backbone_address: str,
        media_host: str,
        state: EdgeState | None = None,
    ) -> Topology:
        """Record the addresses an edge process bound (and optionally a new state).

        Whether registering re-activates a drained or down edge is the caller's
        policy: pass ``state`` to change it, or leave it None to keep it.
        """
        changes: dict[str, Any] = dict(
            control_address=control_address, backbone_address=backbone_address, media_host=media_host
        )
        if state is not None:
            changes["state"] = EdgeState(state)
        return self._with_edge(edge_id, **changes)

    def with_edge_state(self, edge_id: str, state: EdgeState | str) -> Topology:
        """Drain, undrain or take down an edge."""
        return self._with_edge(edge_id, state=EdgeState(state))

    def with_link(
        self,
        a: str,
        b: str,
        *,
        rtt_ms: float | None = None,
        loss: float | None = None,
        up: bool | None = None,
    ) -> Topology:
        """Update a link's measurements or state, or add the link if it is new.

        Fields left None keep their value; a new link needs ``rtt_ms``.
        """
        self.edge(a), self.edge(b)
        old = self.link(a, b)
        if old is None:
            if rtt_ms is None:
                raise TopologyError(f"link {a!r}<->{b!r} does not exist; rtt_ms is needed to add it")
            new = Link(a, b, rtt_ms, 0.0 if loss is None else loss, True if up is None else up)
            return self._changed(links=(*self.links, new))
        new = replace(
            old,
            rtt_ms=old.rtt_ms if rtt_ms is None else rtt_ms,
            loss=old.loss if loss is None else loss,
            up=old.up if up is None else up,
        )
        return self._changed(links=(new if ln.key == old.key else ln for ln in self.links))

    def with_version(self, version: int) -> Topology:
        return Topology(self.regions, self.edges, self.links, version)

    # ---- declarative file format --------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "regions": [{"name": r.name, "lat": r.lat, "lon": r.lon} for r in self.regions],
            "edges": [
                {f.name: (getattr(e, f.name).value if f.name == "state" else getattr(e, f.name)) for f in fields(e)}
                for e in self.edges
            ],
            "links": [{"a": ln.a, "b": ln.b, "rtt_ms": ln.rtt_ms, "loss": ln.loss, "up": ln.up} for ln in self.links],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Topology:
        """Build from the declarative format (see module docstring); raises ``TopologyError``."""
        if not isinstance(doc, Mapping):
            raise TopologyError(f"a topology must be a JSON object, got {type(doc).__name__}")
        _check_keys("topology", doc, required={"regions", "edges"}, optional={"links", "version"})
        regions = [_region_from(item) for item in _list(doc, "regions")]
        edges = [_edge_from(item) for item in _list(doc, "edges")]
        by_name = {r.name: r for r in regions}
        region_of = {e.edge_id: by_name.get(e.region) for e in edges}

        def prior(a: str, b: str) -> float:
            ra, rb = region_of.get(a), region_of.get(b)
            if ra is None or rb is None:
                return INTRA_REGION_RTT_MS  # unknown edge/region: validation reports it
            return reference_rtt_ms(ra, rb)

        raw_links = doc.get("links", [])
        if raw_links == "full_mesh":
            links = _full_mesh(edges, prior)
        else:
            if not isinstance(raw_links, list):
                raise TopologyError('"links" must be a list of links or the string "full_mesh"')
            links = [_link_from(item, prior) for item in raw_links]
        version = doc.get("version", 1)
        return cls(tuple(regions), tuple(edges), tuple(links), version)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Topology:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TopologyError(f"not valid JSON: {exc}") from None
        return cls.from_dict(doc)


# ---- declarative-format helpers ---------------------------------------------


def _check_keys(what: str, item: Mapping[str, Any], *, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - item.keys())
    unknown = sorted(item.keys() - required - optional)
    problems = []
    if missing:
        problems.append(f"{what}: missing {', '.join(missing)}")
    if unknown:
        problems.append(f"{what}: unknown field(s) {', '.join(map(repr, unknown))}")
    if problems:
        raise TopologyError(problems)


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc[key]
    if not isinstance(value, list):
        raise TopologyError(f"{key!r} must be a list")
    return value


def _region_from(item: Any) -> Region:
    if isinstance(item, str):
        site = region_sites().get(item)
        if site is None:
            known = ", ".join(region_sites())
            raise TopologyError(f"unknown region {item!r}: give lat/lon or use a shipped region ({known})")
        return Region(site.name, site.lat, site.lon)
    if not isinstance(item, Mapping):
        raise TopologyError(f"a region must be a name or an object, got {item!r}")
    _check_keys(f"region {item.get('name')!r}", item, required={"name", "lat", "lon"}, optional=set())
    return Region(item["name"], item["lat"], item["lon"])


_EDGE_FIELDS = {f.name for f in fields(EdgeNode)}


def _edge_from(item: Any) -> EdgeNode:
    if not isinstance(item, Mapping):
        raise TopologyError(f"an edge must be an object, got {item!r}")
    _check_keys(
        f"edge {item.get('edge_id')!r}",
        item,
        required={"edge_id", "number", "region"},
        optional=_EDGE_FIELDS - {"edge_id", "number", "region"},
    )
    return EdgeNode(**item)


def _link_from(item: Any, prior: Any) -> Link:
    if not isinstance(item, Mapping):
        raise TopologyError(f"a link must be an object, got {item!r}")
    _check_keys(
        f"link {item.get('a')!r}<->{item.get('b')!r}", item, required={"a", "b"}, optional={"rtt_ms", "loss", "up"}
    )
    rtt = item["rtt_ms"] if "rtt_ms" in item else prior(item["a"], item["b"])
    return Link(item["a"], item["b"], rtt, item.get("loss", 0.0), item.get("up", True))


def _full_mesh(edges: Sequence[EdgeNode], rtt: Any) -> list[Link]:
    return [Link(x.edge_id, y.edge_id, rtt(x.edge_id, y.edge_id)) for x, y in itertools.combinations(edges, 2)]


# ---- shipped defaults ---------------------------------------------------------


def default_topology(
    regions: Sequence[str] = ("Frankfurt", "Virginia", "Singapore"),
    edges_per_region: int = 1,
) -> Topology:
    """Edges in shipped regions, fully meshed with reference RTTs (1 ms within a region).

    Edge ids are ``<prefix>-<n>`` (e.g. "fra-1", "fra-2"); numbers run 1..N in
    region order. Edges carry no addresses until they register.
    """
    sites = region_sites()
    problems = [f"unknown region {name!r}" for name in regions if name not in sites]
    if len(set(regions)) != len(regions):
        problems.append(f"regions listed twice: {sorted({r for r in regions if list(regions).count(r) > 1})}")
    if not isinstance(edges_per_region, int) or edges_per_region < 1:
        problems.append(f"edges_per_region must be >= 1, got {edges_per_region!r}")
    if not regions:
        problems.append("at least one region is needed")
    if problems:
        if any(p.startswith("unknown region") for p in problems):
            problems.append(f"shipped regions: {', '.join(sites)}")
        raise TopologyError(problems)

    region_objs = [Region(sites[n].name, sites[n].lat, sites[n].lon) for n in regions]
    edges = [
        EdgeNode(f"{sites[name].edge_prefix}-{i}", number, name)
        for number, (name, i) in enumerate(
            ((name, i) for name in regions for i in range(1, edges_per_region + 1)), start=1
        )
    ]
    region_of = {e.edge_id: e.region for e in edges}
    links = _full_mesh(edges, lambda a, b: reference_rtt_ms(region_of[a], region_of[b]))
    return Topology(tuple(region_objs), tuple(edges), tuple(links), 1)


def world_topology(edges_per_region: int = 1) -> Topology:
    """All 13 shipped regions (see ``routing/data/regions.json``)."""
    return default_topology(tuple(region_sites()), edges_per_region)
