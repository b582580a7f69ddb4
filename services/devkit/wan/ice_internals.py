"""The private aiortc 1.16 / aioice 0.13 attributes the leg emulation uses, in one place.

A leg's UDP sockets belong to aioice: each local candidate has a
``StunProtocol`` whose ``transport.sendto`` sends and whose
``datagram_received`` receives every STUN, DTLS and SRTP datagram of the leg.
They are reached as ``RTCPeerConnection`` -> transceivers -> ``RTCDtlsTransport``
-> ``RTCIceTransport.iceGatherer._connection`` (aioice ``Connection``) ->
``_protocols``. Both libraries are pinned exactly in pyproject.toml and
tests/services/devkit/test_wan_legs.py checks this path, so an upgrade that
moves it fails with :class:`IceInternalsChanged` instead of silently
emulating nothing.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

__all__ = ["IceInternalsChanged", "ice_protocols", "leg_peer_connection"]


class IceInternalsChanged(RuntimeError):
    """aiortc/aioice no longer expose what the leg emulation hooks into."""


def ice_protocols(pc: RTCPeerConnection) -> list[Any]:
    """Every aioice ``StunProtocol`` (one per local candidate) of this peer connection's ICE transports."""
    protocols: list[Any] = []
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None:
            continue
        try:
            connection = dtls.transport.iceGatherer._connection
            found = list(connection._protocols)
        except AttributeError as exc:
            raise IceInternalsChanged(
                f"aiortc/aioice changed: cannot reach the ICE sockets of a peer connection ({exc}); "
                "update duet/services/devkit/wan/ice_internals.py for the installed versions"
            ) from exc
        for protocol in found:
            if id(protocol) in seen:
                continue  # BUNDLE: every transceiver shares one ICE connection
            if not callable(getattr(protocol, "datagram_received", None)) or not hasattr(protocol, "transport"):
                raise IceInternalsChanged(
                    f"aioice changed: {type(protocol).__name__} has no transport/datagram_received to hook"
                )
            seen.add(id(protocol))
            protocols.append(protocol)
    return protocols


def leg_peer_connection(leg: Any) -> RTCPeerConnection:
    """The ``RTCPeerConnection`` behind an edge ``Leg`` (its private ``_pc``)."""
    pc = getattr(leg, "_pc", None)
    if not isinstance(pc, RTCPeerConnection):
        raise IceInternalsChanged(
            "duet.edge.leg.Leg no longer keeps its RTCPeerConnection in _pc; "
            "update duet/services/devkit/wan/ice_internals.py"
        )
    return pc
