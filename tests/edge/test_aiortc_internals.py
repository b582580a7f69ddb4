"""The private aiortc/aioice APIs the edge relies on (edge/aiortc_internals.py) still exist,
and with them the edge's receivers never see (so never decode) an RTP packet."""

from __future__ import annotations

import asyncio
import os
import socket
import stat

import aioice.ice
import aiortc
import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from duet.edge import aiortc_internals
from tests.edge.harness import close_client, make_client, two_edges


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"


async def test_private_hooks_exist() -> None:
    for name in ("_handle_rtp_data", "_handle_rtcp_data", "_send_rtp"):
        assert callable(getattr(RTCDtlsTransport, name, None)), name
    assert callable(getattr(aioice.ice, "get_host_addresses", None))
    # The fast path's: aioice's per-connection receive hook and selected pairs, aiortc's DTLS state.
    assert callable(getattr(aioice.ice.Connection, "data_received", None))
    assert hasattr(aiortc.rtcdtlstransport.State, "CONNECTED")
    pc = aiortc.RTCPeerConnection()
    try:
        t: RTCRtpTransceiver = pc.addTransceiver("video")
        assert isinstance(t.sender._ssrc, int)
        assert isinstance(t._codecs, list)
        assert isinstance(t.sender.transport, RTCDtlsTransport)
        assert aiortc_internals.selected_socket_fd(t.sender.transport) is None  # no pair selected yet
    finally:
        await pc.close()


@pytest.mark.slow
async def test_edge_receivers_never_get_rtp(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    original = RTCRtpReceiver._handle_rtp_packet

    async def spy(self: RTCRtpReceiver, packet, arrival_time_ms: int) -> None:  # type: ignore[no-untyped-def]
        seen.append(id(self))
        await original(self, packet, arrival_time_ms)

    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtp_packet", spy)
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=31)
        b, leg_b = await make_client(e2, tag=32)
        try:
            e1.bridge(3, leg_a, 0, "vir-1")
            e2.bridge(3, leg_b, 1, "fra-1")
            await b.wait_for_tag(31)
            edge_receivers = {
                id(t.receiver) for leg in (*e1.legs.values(), *e2.legs.values()) for t in leg._pc.getTransceivers()
            }
            client_receivers = {id(t.receiver) for t in (*a.pc.getTransceivers(), *b.pc.getTransceivers())}
            assert client_receivers & set(seen), "the spy saw nothing: the test would prove nothing"
            assert not edge_receivers & set(seen), "an edge receiver got RTP: it would decode it"
        finally:
            await close_client(a)
            await close_client(b)


@pytest.mark.slow
async def test_connected_legs_carry_rtp_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from duet.edge.backbone_wire import StreamKind
    from duet.edge.leg import Leg

    slow: list[int] = []
    original = Leg._handle_rtp_data

    async def on_aiortcs_path(self: Leg, data: bytes, arrival_time_ms: int = 0) -> None:
        slow.append(1)
        await original(self, data, arrival_time_ms)

    monkeypatch.setattr(Leg, "_handle_rtp_data", on_aiortcs_path)
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=33)
        b, leg_b = await make_client(e2, tag=34)
        try:
            e1.bridge(5, leg_a, 0, "vir-1")
            e2.bridge(5, leg_b, 1, "fra-1")
            await b.wait_for_tag(33)
            await a.wait_for_tag(34)
            await asyncio.sleep(1.0)
            legs = [e1.legs[leg_a], e2.legs[leg_b]]
            assert all(leg._send_now for leg in legs), "a connected leg is not on the fast path"
            # The socket the selected pair uses: where media arrives (bench-edge asks it for arrival times).
            fd = aiortc_internals.selected_socket_fd(a.pc.getTransceivers()[0].sender.transport)
            assert fd is not None and stat.S_ISSOCK(os.fstat(fd).st_mode)
            with socket.socket(fileno=os.dup(fd)) as sock:
                assert sock.type == socket.SOCK_DGRAM and sock.getsockname()[0] == "127.0.0.1"
            received = sum(leg.packets_from_client(k) for leg in legs for k in StreamKind)
            # Only what arrived before the connection state event took aiortc's path.
            assert received > 50 and len(slow) < received * 0.1, (len(slow), received)
        finally:
            await close_client(a)
            await close_client(b)
