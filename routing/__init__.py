"""Duet routing library: topology model, geolocation, ingress choice, backbone paths, next-hop tables.

Transport-free: plain dataclasses in, plain dataclasses out; the gRPC routing
service (``duet.services.routing_server``) is a thin layer over these modules:

- ``topology``  regions, edges, links; validation; shipped default/world topologies
- ``reference`` the shipped region sites and measured RTT matrix (CC BY 4.0, see data/ATTRIBUTION.md)
- ``distance``  great-circle distance and the distance RTT prior
- ``geo``       client address -> location (geoip2 over mmdb files)
- ``geo_database`` the default real GeoIP database (DB-IP City Lite): name, checksum, place
- ``ingress``   which edge a client attaches to
- ``paths``     least-cost backbone paths and alternates (networkx)
- ``next_hop``  per-edge next-hop tables
- ``all_pairs`` every pair's route precomputed per topology version (read in microseconds)
- ``membership`` which edges are alive, from their heartbeats (a silence timer)
- ``link_health`` link weights following probe measurements, with hysteresis
- ``live_view``  the declared topology with membership and measurements applied (what routes use)
"""

from duet.routing.geo import GeoLocator, LocateResult, Location, parse_ip
from duet.routing.ingress import IngressChoice, NoEdgeAvailable, pick_ingress
from duet.routing.next_hop import NextHopEntry, next_hop_table, next_hop_tables
from duet.routing.paths import NoRoute, Path, alternate_paths, build_graph, shortest_path
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

__all__ = [
    "EdgeNode",
    "EdgeState",
    "GeoLocator",
    "IngressChoice",
    "Link",
    "LocateResult",
    "Location",
    "NextHopEntry",
    "NoEdgeAvailable",
    "NoRoute",
    "Path",
    "Region",
    "Topology",
    "TopologyError",
    "UnknownEdge",
    "alternate_paths",
    "build_graph",
    "default_topology",
    "next_hop_table",
    "next_hop_tables",
    "parse_ip",
    "pick_ingress",
    "reference_rtt_ms",
    "shortest_path",
    "world_topology",
]
