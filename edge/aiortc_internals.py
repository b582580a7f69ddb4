"""The private aiortc 1.16 APIs the edge depends on, in one place.

aiortc decodes every RTP packet it receives. To forward media untouched, the
edge replaces two methods on each leg's ``RTCDtlsTransport`` instance:
``_handle_rtp_data(data, arrival_time_ms)`` receives RTP right after SRTP
decryption, and ``_handle_rtcp_data(data)`` receives RTCP the same way. It
sends with ``RTCDtlsTransport._send_rtp(bytes)``, which SRTP-protects RTP or
RTCP and sends it on the leg. aiortc is pinned exactly in pyproject.toml and
tests/edge/test_aiortc_internals.py checks these hooks still exist, so an
upgrade that moves them fails loudly instead of silently decoding.

Once DTLS is up, ``fast_media_path`` takes the per-packet work off aiortc's
and aioice's asyncio plumbing: a received SRTP packet would otherwise go
through aioice's queue and wake the DTLS transport's task, and a sent one
through three awaits; here RTP is unprotected and handed over inside the
socket callback, and packets are protected and written to the selected
pair's socket in the caller's call. RTCP and DTLS keep aiortc's path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pylibsrtp
from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import is_rtcp

_INTERCEPTED = "_duet_intercepted"


def intercept_media(
    dtls: RTCDtlsTransport,
    on_rtp: Callable[[bytes, int], Awaitable[None]],
    on_rtcp: Callable[[bytes], Awaitable[None]],
    on_rtcp_refused: Callable[[Exception], None],
) -> None:
    """Route this transport's decrypted RTP to ``on_rtp`` and let ``on_rtcp`` see RTCP first.

    RTCP still reaches aiortc afterwards (it keeps its reports); RTP never does.
    Whatever aiortc raises on a client's RTCP goes to ``on_rtcp_refused``
    instead of ending the transport's receive loop (aiortc's router catches
    only ValueError: a REMB whose SSRC count runs past its end raises
    struct.error). Idempotent, because with BUNDLE every transceiver shares
    one transport.
    """
    if getattr(dtls, _INTERCEPTED, False):
        return
    original_rtcp = dtls._handle_rtcp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int = 0) -> None:
        await on_rtp(data, arrival_time_ms)

    async def handle_rtcp_data(data: bytes) -> None:
        await on_rtcp(data)
        try:
            await original_rtcp(data)
        except Exception as exc:
            on_rtcp_refused(exc)

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]
    setattr(dtls, _INTERCEPTED, True)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    """Codecs agreed for this transceiver, preferred first (set by setRemoteDescription)."""
    return list(transceiver._codecs)


def negotiated_header_extensions(transceiver: RTCRtpTransceiver) -> dict[int, str]:
    """Header extensions agreed for this transceiver: ID -> URI (the offer's IDs, set by setRemoteDescription)."""
    return {ext.id: ext.uri for ext in transceiver._headerExtensions}


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC this sender announces in SDP; forwarded RTP must carry it."""
    return int(sender._ssrc)


def sender_rtx_ssrc(sender: RTCRtpSender) -> int:
    """The RTX SSRC this sender announces (ssrc-group FID) when RTX was negotiated."""
    return int(sender._rtx_ssrc)


def selected_socket_fd(dtls: RTCDtlsTransport) -> int | None:
    """The file descriptor of the socket this transport's selected candidate pair uses; None before one is
    selected. Media arrives on it, so its kernel arrival times are the media's."""
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None or pair.protocol.transport is None:
        return None
    sock = pair.protocol.transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


logger = logging.getLogger("duet.edge.fast_path")

SyncSender = Callable[[bytes], None]


def fast_media_path(
    dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None], on_drop: Callable[[str], None]
) -> SyncSender:
    """After DTLS: decrypted RTP straight to ``on_rtp`` from the socket; returns a synchronous sender.

    The sender SRTP-protects RTP or RTCP and writes it to the selected
    candidate pair's socket (whatever wraps that socket's transport still
    applies); it raises ConnectionError when the leg is not connected and
    pylibsrtp.Error when SRTP refuses the packet, like ``_send_rtp``. On the
    receiving side nothing ``on_rtp`` raises reaches the socket callback
    (asyncio would close the socket): it is logged and counted.
    """
    if dtls._state != State.CONNECTED:
        raise ConnectionError("the fast path needs a connected DTLS transport")
    connection = dtls.transport._connection
    tx, rx = dtls._tx_srtp, dtls._rx_srtp
    original = connection.data_received

    def send(data: bytes) -> None:
        if dtls._state != State.CONNECTED:
            raise ConnectionError("the leg's DTLS transport is closed")
        pair = connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("the leg has no selected candidate pair")
        packet = tx.protect_rtcp(data) if is_rtcp(data) else tx.protect(data)
        pair.protocol.transport.sendto(packet, pair.remote_addr)

    def data_received(data: bytes, component: int) -> None:
        # RTP only (RFC 7983: first byte 128-191; RTCP by its packet type): DTLS, STUN and RTCP
        # keep aiortc's path, which RTCP needs for its reports.
        if len(data) < 12 or not 127 < data[0] < 192 or 192 <= data[1] <= 223 or dtls._state != State.CONNECTED:
            original(data, component)
            return
        try:
            plain = rx.unprotect(data)
        except pylibsrtp.Error:
            on_drop("srtp unprotect failed")
            return
        try:
            on_rtp(plain)
        except Exception:
            logger.exception("fast path: handling a received RTP packet failed")
            on_drop("fast path error")

    connection.data_received = data_received  # type: ignore[method-assign]
    return send
