"""Choose which local addresses aioice gathers host ICE candidates on.

aioice gathers host candidates on every interface *except* 127.0.0.1
(``aioice.ice.get_host_addresses``). On the one machine that runs the tests
and the local cluster, that is the wrong way round: media between clients and
edges must stay on loopback, both because a sandbox's other interfaces may
not route to each other and because emulated WAN delays assume the only path
is the one Duet controls. There is no public aioice or aiortc option for it,
so :func:`restrict_ice_to` replaces that private function (aioice is pinned to
0.13.0 in pyproject.toml, and ``tests/edge/test_ice_hosts.py`` checks the
patch still takes effect).

The patch is process-wide and applies to ICE agents that gather after it.
Importing this module changes nothing; the edge process and the client call
:func:`restrict_ice_to` / :func:`ice_restricted_from_env` explicitly.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Sequence

import aioice.ice

__all__ = ["DEFAULT_ICE_HOSTS", "ENV_VAR", "ice_restricted_from_env", "restore_ice_defaults", "restrict_ice_to"]

logger = logging.getLogger("duet.client.ice")

ENV_VAR = "DUET_ICE_HOSTS"
DEFAULT_ICE_HOSTS = "127.0.0.1"

_ORIGINAL_GET_HOST_ADDRESSES = aioice.ice.get_host_addresses


def restrict_ice_to(addresses: Sequence[str]) -> None:
    """Make every later ICE gathering in this process use exactly these host addresses.

    Addresses of a family the agent does not use (``use_ipv4``/``use_ipv6``)
    are skipped, as aioice itself would. Raises ValueError for an empty list
    or something that is not an IP address.
    """
    if isinstance(addresses, str):
        raise ValueError("addresses must be a sequence of IP addresses, not one string")
    chosen = [str(ipaddress.ip_address(a.strip())) for a in addresses]
    if not chosen:
        raise ValueError("restrict_ice_to needs at least one address")

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            a
            for a in chosen
            if (use_ipv4 and ipaddress.ip_address(a).version == 4)
            or (use_ipv6 and ipaddress.ip_address(a).version == 6)
        ]

    aioice.ice.get_host_addresses = get_host_addresses
    logger.debug("ICE host candidates restricted to %s", ", ".join(chosen))


def ice_restricted_from_env() -> list[str]:
    """Restrict ICE to ``$DUET_ICE_HOSTS`` (comma-separated, default 127.0.0.1); return the list."""
    raw = os.environ.get(ENV_VAR, "").strip() or DEFAULT_ICE_HOSTS
    addresses = [a.strip() for a in raw.split(",") if a.strip()]
    try:
        restrict_ice_to(addresses)
    except ValueError as exc:
        raise ValueError(f"{ENV_VAR}={raw!r} is not a comma-separated list of IP addresses: {exc}") from exc
    return addresses


def restore_ice_defaults() -> None:
    """Undo :func:`restrict_ice_to`: gather on every interface except loopback again."""
    aioice.ice.get_host_addresses = _ORIGINAL_GET_HOST_ADDRESSES
