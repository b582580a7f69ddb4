"""The shipped reference data: region sites and the measured inter-region RTT matrix.

Both files live in ``routing/data`` (package data, loaded with importlib.resources)
and are read once. The RTT matrix is Microsoft's "Azure network round-trip
latency statistics" (CC BY 4.0); see ``routing/data/ATTRIBUTION.md``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Protocol

from duet.routing.distance import great_circle_km, prior_rtt_ms

RTT_MATRIX_FILE = "azure_p50_rtt_2024-04.json"
REGIONS_FILE = "regions.json"

# Two edges in the same region (same metro / campus): a small nonzero RTT, so
# that every link has a positive cost (hop-by-hop forwarding stays loop-free).
INTRA_REGION_RTT_MS = 1.0


class Place(Protocol):
    """Anything with a region name and coordinates (e.g. ``topology.Region``)."""

    @property
    def name(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...


@dataclass(frozen=True)
class RegionSite:
    """One shipped region: where it is, and how Duet names things there."""

    name: str  # same key as in the RTT matrix, e.g. "Frankfurt"
    lat: float
    lon: float
    edge_prefix: str  # edge ids are "<prefix>-<n>", e.g. "fra-1"
    azure_region: str  # the source table's region name, e.g. "Germany West Central"
    country: str  # ISO 3166-1 alpha-2
    country_name: str
    continent: str  # two-letter continent code as GeoIP2 uses
    city: str


def _load_json(name: str) -> Any:
    # Via the routing package (not "duet.routing.data"): data/ has no __init__.py.
    return json.loads(resources.files("duet.routing").joinpath("data", name).read_text(encoding="utf-8"))


@functools.cache
def region_sites() -> Mapping[str, RegionSite]:
    """The 13 shipped regions by name, in file order (read-only)."""
    doc = _load_json(REGIONS_FILE)
    sites = {r["name"]: RegionSite(**r) for r in doc["regions"]}
    return MappingProxyType(sites)


@functools.cache
def rtt_matrix() -> Mapping[str, Mapping[str, float]]:
    """Measured P50 RTT (ms) between distinct shipped regions: ``m[a][b]`` (read-only)."""
    doc = _load_json(RTT_MATRIX_FILE)
    return MappingProxyType(
        {a: MappingProxyType({b: float(v) for b, v in row.items()}) for a, row in doc["rtt_ms"].items()}
    )


def rtt_attribution() -> str:
    """The attribution line that must accompany anything built on the RTT matrix."""
    return str(_load_json(RTT_MATRIX_FILE)["attribution"])


def measured_rtt_ms(region_a: str, region_b: str) -> float | None:
    """The measured RTT between two distinct regions, or None if the pair was not measured."""
    return rtt_matrix().get(region_a, {}).get(region_b)


def _coords(region: str | Place) -> tuple[float, float]:
    if not isinstance(region, str):
        return region.lat, region.lon
    site = region_sites().get(region)
    if site is None:
        known = ", ".join(region_sites())
        raise ValueError(f"unknown region {region!r} (no coordinates); known regions: {known}")
    return site.lat, site.lon


def reference_rtt_ms(region_a: str | Place, region_b: str | Place) -> float:
    """Best prior RTT (ms) between two regions.

    The measured median when the table has the pair, else the distance prior
    ``1.8 * 2 * great_circle_km / 200`` (see routing/distance.py). Regions are
    names of shipped regions or objects with ``name``/``lat``/``lon`` (for
    regions a topology file declares itself). The same region gives
    ``INTRA_REGION_RTT_MS``.
    """
    name_a = region_a if isinstance(region_a, str) else region_a.name
    name_b = region_b if isinstance(region_b, str) else region_b.name
    if name_a == name_b:
        return INTRA_REGION_RTT_MS
    measured = measured_rtt_ms(name_a, name_b)
    if measured is not None:
        return measured
    (lat1, lon1), (lat2, lon2) = _coords(region_a), _coords(region_b)
    # Never below the intra-region floor: two declared regions may share a city.
    return max(INTRA_REGION_RTT_MS, prior_rtt_ms(great_circle_km(lat1, lon1, lat2, lon2)))
