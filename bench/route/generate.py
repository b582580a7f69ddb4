"""A large synthetic backbone: N edges spread over the shipped regions, M links, all registered."""

from __future__ import annotations

import random

from duet.routing.reference import INTRA_REGION_RTT_MS, reference_rtt_ms, region_sites
from duet.routing.topology import EdgeNode, Link, Region, Topology


def generated_topology(edges: int, links: int, *, seed: int = 1) -> Topology:
    """``edges`` edges round-robin over the 13 shipped regions, a random spanning tree plus random
    extra links up to ``links`` (RTT = the regions' reference RTT with +-10 % noise, some loss),
    every edge registered so it can carry traffic."""
    if links < edges - 1:
        raise ValueError(f"{links} links cannot connect {edges} edges")
    if links > edges * (edges - 1) // 2:
        raise ValueError(f"{edges} edges have at most {edges * (edges - 1) // 2} links")
    rng = random.Random(seed)
    sites = list(region_sites().values())
    regions = tuple(Region(s.name, s.lat, s.lon) for s in sites)
    nodes = tuple(
        EdgeNode(
            f"{sites[i % len(sites)].edge_prefix}-{i // len(sites) + 1}",
            i + 1,
            sites[i % len(sites)].name,
            control_address=f"127.0.0.1:{20000 + i}",
            backbone_address=f"127.0.0.1:{30000 + i}",
            media_host="127.0.0.1",
        )
        for i in range(edges)
    )

    def rtt(a: EdgeNode, b: EdgeNode) -> float:
        base = INTRA_REGION_RTT_MS if a.region == b.region else reference_rtt_ms(a.region, b.region)
        return round(base * rng.uniform(0.9, 1.1), 2)

    pairs: set[tuple[int, int]] = set()
    order = list(range(edges))
    rng.shuffle(order)
    for position in range(1, edges):
        pairs.add(tuple(sorted((order[position], order[rng.randrange(position)]))))  # type: ignore[arg-type]
    while len(pairs) < links:
        a, b = rng.sample(range(edges), 2)
        pairs.add((min(a, b), max(a, b)))
    link_list = tuple(
        Link(nodes[a].edge_id, nodes[b].edge_id, rtt(nodes[a], nodes[b]), loss=rng.choice((0.0, 0.0, 0.0, 0.001, 0.01)))
        for a, b in sorted(pairs)
    )
    return Topology(regions, nodes, link_list, 1)
