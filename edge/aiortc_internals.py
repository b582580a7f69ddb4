"""The private aiortc 1.16 APIs the edge depends on, in one place.

aiortc decodes every RTP packet it receives. To forward media untouched, the
edge replaces two methods on each leg's ``RTCDtlsTransport`` instance:
``_handle_rtp_data(data, arrival_time_ms)`` receives RTP right after SRTP
decryption, and ``_handle_rtcp_data(data)`` receives RTCP the same way. It
sends with ``RTCDtlsTransport._send_rtp(bytes)``, which SRTP-protects RTP or
RTCP and sends it on the leg. aiortc is pinned exactly in pyproject.toml and
tests/edge/test_aiortc_internals.py checks these hooks still exist, so an
upgrade that moves them fails loudly instead of silently decoding.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

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
