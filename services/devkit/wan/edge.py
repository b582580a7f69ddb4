"""Install the WAN emulation into an edge node: its backbone sends and its client legs.

- **Backbone**: the edge's UDP socket is wrapped (``Backbone.wrap_transport``)
  so each datagram it sends or relays goes through the link to its next hop,
  with the profile for (this edge, next-hop edge). Each edge emulates its own
  outgoing direction, so a link's two directions are emulated by its two ends.
- **Client legs**: right after ``attach_leg`` builds a leg (ICE has gathered,
  the client has not yet got the answer), each of the leg's aioice sockets
  gets its ``sendto`` and its ``datagram_received`` shaped with the leg's
  profile: the edge side of the leg emulates both directions, which works
  for every client, browsers included.

- **Control plane**: with a control region configured, the edge reaches the
  routing service through a :class:`TcpDelayProxy` and registers a second
  one, in front of its EdgeControl server, as its control address, so the
  matchmaker's calls to it (Bridge, AttachLeg, ...) and the replies each pay
  the one-way delay between the two regions (:func:`edge_control_plane`).

Nothing is wrapped when the config has nothing for this edge.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from duet.edge.leg import Leg
from duet.edge.relay import AttachedLeg, EdgeRelay
from duet.services.devkit.wan.delay_proxy import TcpDelayProxy
from duet.services.devkit.wan.ice_internals import ice_protocols, leg_peer_connection
from duet.services.devkit.wan.profile import LinkProfile, WanConfig
from duet.services.devkit.wan.shaper import EmulatedDatagramTransport, LinkCounters, LinkSet

__all__ = [
    "EdgeEmulation",
    "LegEmulation",
    "edge_control_plane",
    "emulate_edge",
    "emulate_edge_from_env",
    "emulate_leg",
]

logger = logging.getLogger("duet.devkit.wan")

_EMULATED = "_duet_wan_emulated"


@dataclass
class LegEmulation:
    """The shaped sockets of one leg: what the edge sends to the client and what it receives from it."""

    session_id: str
    profile: LinkProfile
    to_client: list[EmulatedDatagramTransport] = field(default_factory=list)
    from_client: list[LinkSet] = field(default_factory=list)

    def sent(self) -> LinkCounters:
        total = LinkCounters()
        for transport in self.to_client:
            total.add(transport.links.counters())
        return total

    def received(self) -> LinkCounters:
        total = LinkCounters()
        for links in self.from_client:
            total.add(links.counters())
        return total


def emulate_leg(leg: Leg, profile: LinkProfile) -> LegEmulation:
    """Shape both directions of this leg's ICE sockets with ``profile`` (each way).

    Raises :class:`~duet.services.devkit.wan.ice_internals.IceInternalsChanged`
    when aiortc/aioice no longer look as expected, and ValueError when the leg
    is already emulated.
    """
    pc = leg_peer_connection(leg)
    if getattr(leg, _EMULATED, False):
        raise ValueError(f"leg {leg.leg_id} is already emulated")
    emulation = LegEmulation(leg.session_id, profile)

    def profile_for(_addr: tuple[Any, Any]) -> LinkProfile:
        return profile

    for protocol in ice_protocols(pc):
        received = LinkSet(protocol.datagram_received, profile_for, salt=f"{leg.leg_id}/from-client")
        # aioice closing the socket also drops what is still held inbound.
        transport = EmulatedDatagramTransport(
            protocol.transport, profile_for, salt=f"{leg.leg_id}/to-client", on_close=received.close
        )
        protocol.transport = transport
        protocol.datagram_received = received.submit
        emulation.to_client.append(transport)
        emulation.from_client.append(received)
    setattr(leg, _EMULATED, True)
    return emulation


@dataclass
class EdgeEmulation:
    """What is installed on one edge, with its counters for tests."""

    edge_id: str
    config: WanConfig
    backbone: EmulatedDatagramTransport | None = None
    legs: dict[str, LegEmulation] = field(default_factory=dict)  # by leg id

    def backbone_counters(self) -> LinkCounters:
        return LinkCounters() if self.backbone is None else self.backbone.links.counters()

    def reload(self, config: WanConfig) -> None:
        """Apply ``config``'s backbone profiles from now on (e.g. fail a link mid-call).

        Datagrams already held on the old links still leave as they would have. Leg profiles of legs
        already attached stay as they were; new legs take the new ones. Only an
        edge whose backbone was emulated from the start can change it.
        """
        self.config = config
        if self.backbone is not None:
            self.backbone.links.reset()


def emulate_edge(relay: EdgeRelay, config: WanConfig) -> EdgeEmulation | None:
    """Install ``config`` into a started edge; ``None`` (and nothing installed) when it has nothing for it."""
    has_backbone = config.has_backbone_for(relay.edge_id)
    if not has_backbone and not config.has_legs:
        return None
    emulation = EdgeEmulation(relay.edge_id, config)
    if has_backbone:
        backbone = relay.backbone

        unplaced: set[tuple[Any, Any]] = set()

        def next_hop_profile(addr: tuple[Any, Any]) -> LinkProfile | None:
            peer = backbone.peer_ids.get(addr)  # a probed neighbour, next hop or not
            if peer is not None:
                return emulation.config.backbone_profile(relay.edge_id, peer)
            for entry in backbone.routes.by_number.values():
                if entry.next_hop_address == addr:
                    return emulation.config.backbone_profile(relay.edge_id, entry.next_hop_edge_id)
            if addr not in unplaced:
                unplaced.add(addr)
                logger.warning(
                    "edge %s: backbone datagram to %s, no neighbour or next hop (yet); not emulated",
                    relay.edge_id,
                    addr,
                )
            # Not remembered as unshaped: a probe reply can leave before this edge knows its neighbours.
            raise LookupError(addr)

        def wrap(inner: Any) -> EmulatedDatagramTransport:
            emulation.backbone = EmulatedDatagramTransport(inner, next_hop_profile, salt=f"{relay.edge_id}/backbone")
            return emulation.backbone

        backbone.wrap_transport(wrap)
    if config.has_legs:
        _wrap_attach_leg(relay, emulation)
    logger.warning(
        "edge %s: WAN emulation on (test facility): backbone %s, legs %s",
        relay.edge_id,
        "yes" if has_backbone else "no",
        "yes" if config.has_legs else "no",
    )
    return emulation


def emulate_edge_from_env(relay: EdgeRelay) -> EdgeEmulation | None:
    """:func:`emulate_edge` with ``$DUET_WAN`` (unset: nothing); a bad value raises ValueError saying why."""
    return emulate_edge(relay, WanConfig.from_env())


def _wrap_attach_leg(relay: EdgeRelay, emulation: EdgeEmulation) -> None:
    original: Callable[[str, str], Awaitable[AttachedLeg]] = relay.attach_leg

    async def attach_leg(session_id: str, offer_sdp: str) -> AttachedLeg:
        attached = await original(session_id, offer_sdp)
        profile = emulation.config.leg_profile(session_id)
        leg = relay.legs.get(attached.leg_id)
        if profile is not None and leg is not None:
            emulation.legs[attached.leg_id] = emulate_leg(leg, profile)
        return attached

    relay.attach_leg = attach_leg  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def edge_control_plane(
    config: WanConfig, edge_id: str, *, routing: str, control: str, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[str, str]]:
    """(routing address to dial, control address to register) for this edge, delayed when configured.

    Without a control region both are returned unchanged and nothing runs.
    Otherwise two proxies on ``host`` run until the context exits: one to the
    routing service, one in front of this edge's own EdgeControl server; each
    delays both directions by the one-way delay between the edge's region and
    the control region. Raises ValueError when the edge is not in the control
    plane's topology.
    """
    if config.control is None:
        yield routing, control
        return
    profile = config.control.to_edge(edge_id)
    async with (
        TcpDelayProxy(routing, profile, host=host, name=f"{edge_id} -> routing") as routing_proxy,
        TcpDelayProxy(control, profile, host=host, name=f"control -> {edge_id}") as control_proxy,
    ):
        logger.warning(
            "edge %s: control plane emulated (test facility): %.1f ms each way to the control region %s",
            edge_id,
            profile.delay_ms,
            config.control.region,
        )
        yield routing_proxy, control_proxy
