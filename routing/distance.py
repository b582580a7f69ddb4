"""Great-circle distance and the distance-based RTT prior.

Facts behind the prior (see routing/data/ATTRIBUTION.md for the data source):
light in fibre covers about 200 km per ms, so the round-trip floor is about
1 ms per 100 km of great-circle distance; measured Azure backbone RTTs are a
median 1.83x that floor (middle half 1.47x-2.16x), because fibre follows
roads, coasts and cable landings rather than great circles. So for a pair we
have no measurement for, ``1.8 * 2 * km / 200`` is a fair estimate.
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
FIBRE_KM_PER_MS = 200.0  # speed of light in glass, ~2/3 c
ROUTE_INFLATION = 1.8  # measured RTT / great-circle floor, median of the reference table


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    # min() guards against rounding pushing h just above 1 for antipodes.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def prior_rtt_ms(km: float) -> float:
    """Estimated RTT for a great-circle distance: inflation x there-and-back at fibre speed."""
    return ROUTE_INFLATION * 2 * km / FIBRE_KM_PER_MS
