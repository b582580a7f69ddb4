"""ICE host restriction: edges and clients gather candidates only where we say (aioice private API)."""

from __future__ import annotations

from collections.abc import Iterator

import aioice
import pytest

from duet.edge import ice_hosts as ice


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ice.ENV_VAR, raising=False)
    ice.restrict_ice_to(["127.0.0.1"])
    yield
    ice.restore_ice_defaults()


async def test_restricted_ice_gathers_only_loopback() -> None:
    connection = aioice.Connection(ice_controlling=True, components=1)
    try:
        await connection.gather_candidates()
        hosts = [c.host for c in connection.local_candidates]
    finally:
        await connection.close()
    assert hosts == ["127.0.0.1"]


def test_ice_hosts_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setenv(ice.ENV_VAR, "127.0.0.1, ::1")
    assert ice.ice_restricted_from_env() == ["127.0.0.1", "::1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    monkeypatch.delenv(ice.ENV_VAR)
    assert ice.ice_restricted_from_env() == ["127.0.0.1"]
    monkeypatch.setenv(ice.ENV_VAR, "localhost")
    with pytest.raises(ValueError, match="DUET_ICE_HOSTS"):
        ice.ice_restricted_from_env()
    with pytest.raises(ValueError):
        ice.restrict_ice_to([])
