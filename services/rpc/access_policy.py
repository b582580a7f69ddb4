"""Who may call each RPC: one table for every Duet server.

Every fully-qualified method is listed here with the credentials it accepts;
the servers' interceptor (``duet.services.rpc.auth``) refuses a method that is
not listed, so a new RPC is unreachable until it is given a line here (and
``tests/services/rpc/test_access_policy.py`` fails until then).

Roles (``duet.services.auth.tokens.Role``): ``edge`` tokens are bound to one
edge id; ``matchmaker`` drives edges and asks for ingress and routes;
``ops-read`` reads; ``ops-admin`` may do everything ``ops-read`` may, plus
changes. A ``TopologyAdmin`` read RPC takes ``OPS_READ``, a change ``OPS_ADMIN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from duet.services.auth.tokens import Role, TokenKind

__all__ = ["OPS_ADMIN", "OPS_READ", "POLICY", "Access", "services", "users"]


@dataclass(frozen=True)
class Access:
    """The credentials one method accepts."""

    # Any valid user token (the handler decides what that user may see).
    users: bool = False
    # Service tokens with one of these roles.
    roles: frozenset[Role] = field(default_factory=frozenset)
    # For edge tokens: the request field that must name the token's own edge.
    edge_id_field: str | None = None

    @property
    def kinds(self) -> frozenset[TokenKind]:
        return frozenset(([TokenKind.USER] if self.users else []) + ([TokenKind.SERVICE] if self.roles else []))

    def describe(self) -> str:
        """The credential wanted, in words: "a user token or a service token (role matchmaker)"."""
        wanted = ["a user token"] if self.users else []
        if self.roles:
            names = " or ".join(sorted(r.value for r in self.roles))
            wanted.append(f"a service token (role {names})")
        return " or ".join(wanted) or "nothing (no caller may call it)"


def users(*also: Role) -> Access:
    """Any user; and services with the roles ``also``."""
    return Access(users=True, roles=frozenset(also))


def services(*roles: Role, edge_id_field: str | None = None) -> Access:
    """Service tokens with one of ``roles``; an edge token only for the edge named in ``edge_id_field``."""
    return Access(roles=frozenset(roles), edge_id_field=edge_id_field)


# ops-admin can do everything ops-read can: use these, not the bare roles, for ops methods.
OPS_READ = (Role.OPS_READ, Role.OPS_ADMIN)
OPS_ADMIN = (Role.OPS_ADMIN,)

POLICY: Mapping[str, Access] = {
    # Clients. GetCall: a user reads only calls they were in (checked by the matchmaker).
    "/duet.v1.Matchmaker/Session": users(),
    "/duet.v1.Matchmaker/GetCall": users(Role.MATCHMAKER, *OPS_READ),
    # Friends: user tokens only; the handler acts for the token's user, never another.
    "/duet.v1.Matchmaker/ListFriends": users(),
    "/duet.v1.Matchmaker/RemoveFriend": users(),
    # Every call's record (users' ids, edges, timings): operators only.
    "/duet.v1.Matchmaker/ListCalls": services(*OPS_READ),
    # Moderation (served beside Matchmaker): moderators look with ops-read, clear a hold with ops-admin.
    "/duet.v1.Moderation/ListHeld": services(*OPS_READ),
    "/duet.v1.Moderation/ListReports": services(*OPS_READ),
    "/duet.v1.Moderation/ClearHold": services(*OPS_ADMIN),
    # The routing service.
    "/duet.v1.Routing/PickIngress": services(Role.MATCHMAKER),
    "/duet.v1.Routing/PickRoute": services(Role.MATCHMAKER),
    "/duet.v1.Routing/RegisterEdge": services(Role.EDGE, edge_id_field="edge_id"),
    "/duet.v1.Routing/WatchRoutes": services(Role.EDGE, edge_id_field="edge_id"),
    "/duet.v1.Routing/GetTopology": services(*OPS_READ),
    "/duet.v1.Routing/Heartbeat": services(Role.EDGE, edge_id_field="edge_id"),
    # The matchmaker re-attaches a dead edge's clients; ops may watch too.
    "/duet.v1.Routing/WatchMembership": services(Role.MATCHMAKER, *OPS_READ),
    # Topology admin (served beside Routing). ApplyTopology needs ops-admin even for a dry run.
    "/duet.v1.TopologyAdmin/GetTopologyFile": services(*OPS_READ),
    "/duet.v1.TopologyAdmin/ListTopologyChanges": services(*OPS_READ),
    "/duet.v1.TopologyAdmin/ApplyTopology": services(*OPS_ADMIN),
    "/duet.v1.TopologyAdmin/SetEdgeState": services(*OPS_ADMIN),
    "/duet.v1.TopologyAdmin/SetLink": services(*OPS_ADMIN),
    # Edge control: only the matchmaker changes legs and bridges.
    "/duet.v1.EdgeControl/AttachLeg": services(Role.MATCHMAKER),
    "/duet.v1.EdgeControl/DetachLeg": services(Role.MATCHMAKER),
    "/duet.v1.EdgeControl/Bridge": services(Role.MATCHMAKER),
    "/duet.v1.EdgeControl/Unbridge": services(Role.MATCHMAKER),
    "/duet.v1.EdgeControl/GetStats": services(Role.MATCHMAKER, *OPS_READ),
}
