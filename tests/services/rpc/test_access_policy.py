"""The access-policy table covers every RPC in the protos, and nothing else."""

from __future__ import annotations

import importlib
import pkgutil

import duet.v1
from duet.services.auth.tokens import Role, TokenKind
from duet.services.rpc.access_policy import OPS_READ, POLICY, Access, services, users


def every_rpc() -> set[str]:
    """Every fully-qualified method of every service in every duet.v1 proto (new protos included)."""
    methods = set()
    for module in pkgutil.iter_modules(duet.v1.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"duet.v1.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return methods


def test_every_rpc_has_a_policy_and_every_policy_an_rpc() -> None:
    rpcs = every_rpc()
    assert "/duet.v1.Routing/RegisterEdge" in rpcs and "/duet.v1.Matchmaker/Session" in rpcs
    missing = sorted(rpcs - set(POLICY))
    assert not missing, f"add these RPCs to duet.services.rpc.access_policy.POLICY: {missing}"
    stale = sorted(set(POLICY) - rpcs)
    assert not stale, f"POLICY names RPCs no proto defines: {stale}"


def test_every_policy_lets_someone_in() -> None:
    for method, access in POLICY.items():
        assert access.kinds, f"{method} accepts nobody"


def test_the_roles_each_rpc_accepts() -> None:
    def callers(method: str) -> set[str]:
        access = POLICY[method]
        return ({"user"} if access.users else set()) | {r.value for r in access.roles}

    assert callers("/duet.v1.Matchmaker/Session") == {"user"}
    assert callers("/duet.v1.Matchmaker/GetCall") == {"user", "matchmaker", "ops-read", "ops-admin"}
    for rpc in ("RegisterEdge", "WatchRoutes"):
        assert callers(f"/duet.v1.Routing/{rpc}") == {"edge"}
        assert POLICY[f"/duet.v1.Routing/{rpc}"].edge_id_field == "edge_id"
    for rpc in ("PickIngress", "PickRoute"):
        assert callers(f"/duet.v1.Routing/{rpc}") == {"matchmaker"}
    assert callers("/duet.v1.Routing/GetTopology") == {"ops-read", "ops-admin"}
    for rpc in ("AttachLeg", "DetachLeg", "Bridge", "Unbridge"):
        assert callers(f"/duet.v1.EdgeControl/{rpc}") == {"matchmaker"}
    assert callers("/duet.v1.EdgeControl/GetStats") == {"matchmaker", "ops-read", "ops-admin"}
    for rpc in ("GetTopologyFile", "ListTopologyChanges"):
        assert callers(f"/duet.v1.TopologyAdmin/{rpc}") == {"ops-read", "ops-admin"}
    for rpc in ("ApplyTopology", "SetEdgeState", "SetLink"):
        assert callers(f"/duet.v1.TopologyAdmin/{rpc}") == {"ops-admin"}


def test_access_describes_itself_in_words() -> None:
    assert users().describe() == "a user token"
    assert users(Role.MATCHMAKER).describe() == "a user token or a service token (role matchmaker)"
    assert services(*OPS_READ).describe() == "a service token (role ops-admin or ops-read)"
    assert services(Role.EDGE).kinds == {TokenKind.SERVICE}
    assert Access().describe() == "nothing (no caller may call it)"
