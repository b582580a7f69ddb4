"""What the WAN emulation applies: link profiles and where they apply (a test facility).

A :class:`LinkProfile` is one direction of one emulated link: one-way delay,
jitter and random loss. A :class:`WanConfig` says which profile applies to
each backbone link (keyed by sending and receiving edge id) and to each client
leg of an edge (one "last mile" for all, with overrides per session id). It is
read from ``$DUET_WAN`` (JSON, or the path of a JSON file) so the local
cluster's edge processes can be told, or built in code for in-process tests.
Nothing is emulated unless it is configured.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duet.routing.reference import reference_rtt_ms
from duet.routing.topology import Topology, TopologyError, UnknownEdge, default_topology, world_topology

__all__ = [
    "DEFAULT_LAST_MILE_MS",
    "ENV_VAR",
    "ControlPlane",
    "LinkProfile",
    "WanConfig",
    "backbone_from_topology",
]

ENV_VAR = "DUET_WAN"
DEFAULT_LAST_MILE_MS = 15.0

LinkKey = tuple[str, str]  # (sending edge id, receiving edge id)


@dataclass(frozen=True)
class LinkProfile:
    """One direction of an emulated link.

    Each datagram is lost with probability ``loss``; the others arrive
    ``delay_ms`` plus a uniform draw from ±``jitter_ms`` later (never earlier
    than sent). By default a datagram never overtakes an earlier one on the
    same link (jitter only bunches them up, like a queue); ``reorder=True``
    lets jitter reorder them, as parallel paths do. ``seed`` makes the draws
    repeatable (tests); ``None`` seeds from the system.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    seed: int | None = None
    reorder: bool = False

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "loss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.loss > 1:
            raise ValueError(f"loss is a probability from 0 to 1, got {self.loss!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def active(self) -> bool:
        """Whether it changes anything: a profile of zeros installs nothing."""
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss > 0

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> LinkProfile:
        """From ``{"delay_ms": 50, "jitter_ms": 5, "loss": 0.01, "seed": 1, "reorder": false}``."""
        if not isinstance(doc, Mapping):
            raise ValueError(f'{where}: expected an object like {{"delay_ms": 15}}, got {doc!r}')
        unknown = set(doc) - {"delay_ms", "jitter_ms", "loss", "seed", "reorder"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use delay_ms, jitter_ms, loss, seed, reorder")
        try:
            return cls(**doc)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc


def backbone_from_topology(
    topology: Topology, *, jitter_ms: float = 0.0, seed: int | None = None, loss: float | None = None
) -> dict[LinkKey, LinkProfile]:
    """Profiles for every backbone link in both directions: one-way delay = the link's RTT / 2.

    Loss is the link's own ``loss`` unless ``loss`` is given. Links that are
    down get no profile (routing sends nothing over them).
    """
    profiles: dict[LinkKey, LinkProfile] = {}
    for link in topology.links:
        if not link.up:
            continue
        profile = LinkProfile(
            delay_ms=link.rtt_ms / 2,
            jitter_ms=jitter_ms,
            loss=link.loss if loss is None else loss,
            seed=seed,
        )
        profiles[(link.a, link.b)] = profile
        profiles[(link.b, link.a)] = profile
    return profiles


@dataclass(frozen=True)
class ControlPlane:
    """Where the matchmaker and routing service run, and how far every region is from there.

    Their gRPC traffic to and from a region is delayed by the one-way delay
    between the two regions: the reference RTT / 2 (``reference_rtt_ms`` of the
    topology's regions: measured where the table has the pair, else the
    distance prior). ``jitter_ms`` adds uniform jitter that never reorders
    bytes (a TCP stream stays in order); there is no loss on a stream.
    """

    region: str
    topology: Topology
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        if not self.topology.has_region(self.region):
            known = ", ".join(r.name for r in self.topology.regions)
            raise ValueError(f"control region {self.region!r} is not in the topology; its regions: {known}")
        LinkProfile(jitter_ms=self.jitter_ms)  # the same checks as any profile

    def one_way_ms(self, region: str) -> float:
        """One-way delay between the control region and ``region``."""
        if not self.topology.has_region(region):
            raise ValueError(f"region {region!r} is not in the topology")
        return reference_rtt_ms(self.topology.region(self.region), self.topology.region(region)) / 2

    def to_region(self, region: str, *, extra_ms: float = 0.0) -> LinkProfile:
        """The profile for control traffic with ``region``, each way; ``extra_ms`` adds e.g. a client's last mile."""
        return LinkProfile(delay_ms=self.one_way_ms(region) + extra_ms, jitter_ms=self.jitter_ms)

    def to_edge(self, edge_id: str) -> LinkProfile:
        """The profile for control traffic with an edge (by the region the topology puts it in)."""
        try:
            edge = self.topology.edge(edge_id)
        except UnknownEdge:
            raise ValueError(f"edge {edge_id!r} is not in the control plane's topology") from None
        return self.to_region(edge.region)

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> ControlPlane:
        """From ``{"region": "Frankfurt", "topology": "world", "jitter_ms": 0}``."""
        if not isinstance(doc, Mapping):
            raise ValueError(f'{where}: expected an object like {{"region": "Frankfurt", "topology": "world"}}')
        unknown = set(doc) - {"region", "topology", "jitter_ms"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use region, topology, jitter_ms")
        region = doc.get("region")
        if not isinstance(region, str) or not region:
            raise ValueError(f"{where}.region: name the region the matchmaker and routing service run in")
        topology = _load_topology(doc.get("topology", "world"), f"{where}.topology")
        try:
            return cls(region, topology, doc.get("jitter_ms", 0.0))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class WanConfig:
    """Which profile applies where. Empty (the default) means no emulation at all."""

    backbone: Mapping[LinkKey, LinkProfile] = field(default_factory=dict)
    legs: LinkProfile | None = None  # every client leg, each way, at the edge
    sessions: Mapping[str, LinkProfile] = field(default_factory=dict)  # per session id, instead of `legs`
    control: ControlPlane | None = None  # gRPC between the control region and each edge

    @property
    def enabled(self) -> bool:
        return bool(self.backbone) or self.legs is not None or bool(self.sessions) or self.control is not None

    def backbone_profile(self, edge_id: str, peer_edge_id: str) -> LinkProfile | None:
        profile = self.backbone.get((edge_id, peer_edge_id))
        return profile if profile is not None and profile.active else None

    def leg_profile(self, session_id: str) -> LinkProfile | None:
        profile = self.sessions.get(session_id, self.legs)
        return profile if profile is not None and profile.active else None

    def has_backbone_for(self, edge_id: str) -> bool:
        return any(a == edge_id and p.active for (a, _), p in self.backbone.items())

    @property
    def has_legs(self) -> bool:
        return any(p.active for p in (self.legs, *self.sessions.values()) if p is not None)

    @classmethod
    def from_dict(cls, doc: Any, where: str = ENV_VAR) -> WanConfig:
        """From the JSON form (see docs/architecture.md, "WAN emulation")::

            {"backbone": {"topology": "default", "jitter_ms": 2,
                          "links": {"fra-1>vir-1": {"delay_ms": 50}}},
             "legs": {"delay_ms": 15},           # or true: the default last mile, 15 ms each way
             "sessions": {"session-7": {"delay_ms": 15, "loss": 0.05}},
             "control": {"region": "Frankfurt", "topology": "world"}}

        ``topology`` is "default" (the shipped 3-region topology), "world"
        (all 13 shipped regions) or the path of a topology JSON file; its
        links give one-way delays of RTT/2, and ``links`` entries replace
        single directions. ``control`` puts the matchmaker and routing
        service in a region: an edge's gRPC with them is delayed by the
        one-way delay between its region and that one (:class:`ControlPlane`).
        """
        if not isinstance(doc, Mapping):
            raise ValueError(f"{where}: expected a JSON object with backbone, legs, sessions or control")
        unknown = set(doc) - {"backbone", "legs", "sessions", "control"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use backbone, legs, sessions, control")
        backbone = _backbone_from(doc.get("backbone", {}), f"{where}.backbone")
        legs_doc = doc.get("legs")
        legs: LinkProfile | None
        if legs_doc is None or legs_doc is False:
            legs = None
        elif legs_doc is True:
            legs = LinkProfile(delay_ms=DEFAULT_LAST_MILE_MS)
        else:
            legs = LinkProfile.from_dict(legs_doc, f"{where}.legs")
        sessions_doc = doc.get("sessions", {})
        if not isinstance(sessions_doc, Mapping):
            raise ValueError(f"{where}.sessions: expected an object of session id -> profile")
        sessions = {str(sid): LinkProfile.from_dict(p, f"{where}.sessions[{sid!r}]") for sid, p in sessions_doc.items()}
        control_doc = doc.get("control")
        control = None if control_doc is None else ControlPlane.from_dict(control_doc, f"{where}.control")
        return cls(backbone=backbone, legs=legs, sessions=sessions, control=control)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WanConfig:
        """``$DUET_WAN``: JSON text, or the path of a JSON file; unset or empty: no emulation."""
        raw = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
        if not raw:
            return cls()
        if raw.startswith("{"):
            text, where = raw, ENV_VAR
        else:
            try:
                text = Path(raw).read_text()
            except OSError as exc:
                raise ValueError(f"{ENV_VAR}={raw!r}: cannot read that file ({exc.strerror})") from exc
            where = f"{ENV_VAR} file {raw}"
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where} is not valid JSON: {exc}") from exc
        return cls.from_dict(doc, where)


def _backbone_from(doc: Any, where: str) -> dict[LinkKey, LinkProfile]:
    if not isinstance(doc, Mapping):
        raise ValueError(f"{where}: expected an object with topology, jitter_ms, loss, seed or links")
    unknown = set(doc) - {"topology", "jitter_ms", "loss", "seed", "links"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use topology, jitter_ms, loss, seed, links")
    profiles: dict[LinkKey, LinkProfile] = {}
    source = doc.get("topology")
    if source is not None:
        topology = _load_topology(source, f"{where}.topology")
        try:
            profiles = backbone_from_topology(
                topology, jitter_ms=doc.get("jitter_ms", 0.0), seed=doc.get("seed"), loss=doc.get("loss")
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    links = doc.get("links", {})
    if not isinstance(links, Mapping):
        raise ValueError(f'{where}.links: expected an object of "from>to" -> profile')
    for key, p in links.items():
        a, sep, b = str(key).partition(">")
        if not sep or not a.strip() or not b.strip():
            raise ValueError(f'{where}.links: key {key!r} must name two edges as "from>to", e.g. "fra-1>vir-1"')
        profiles[(a.strip(), b.strip())] = LinkProfile.from_dict(p, f"{where}.links[{key!r}]")
    return profiles


def _load_topology(source: Any, where: str) -> Topology:
    if source == "default":
        return default_topology()
    if source == "world":
        return world_topology()
    if not isinstance(source, str):
        raise ValueError(f'{where}: expected "default", "world" or the path of a topology JSON file, got {source!r}')
    try:
        return Topology.from_dict(json.loads(Path(source).read_text()))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {source} ({exc.strerror})") from exc
    except (json.JSONDecodeError, TopologyError) as exc:
        raise ValueError(f"{where}: {source} is not a valid topology: {exc}") from exc
