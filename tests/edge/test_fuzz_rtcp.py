"""Fuzzing RTCP at the edge: keyframe-request parsing never raises and finds every PLI/FIR
target in a well-formed compound packet; the intercepted RTCP handler a client's
packets reach must not raise into aiortc's transport loop either."""

from __future__ import annotations

import asyncio
import struct

from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from hypothesis import example, given, settings
from hypothesis import strategies as st

from duet.edge import aiortc_internals
from duet.edge.rtp_rewrite import build_fir, build_pli, parse_keyframe_requests
from tests.edge.rtp_strategies import LYING_REMB, RtcpPart, compound_rtcp, mutate_rtcp


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), as_type=st.sampled_from([bytes, bytearray, memoryview]))
def test_arbitrary_bytes_never_raise(data: bytes, as_type: type) -> None:
    found = parse_keyframe_requests(as_type(data))
    assert all(isinstance(s, int) and 0 <= s <= 0xFFFFFFFF for s in found)
    assert len(found) == len(set(found))


@settings(max_examples=150, deadline=None)
@given(compound=compound_rtcp())
def test_well_formed_compound_packets_yield_every_pli_and_fir_target(
    compound: tuple[list[RtcpPart], list[int]],
) -> None:
    parts, wanted = compound
    assert parse_keyframe_requests(b"".join(p.build() for p in parts)) == wanted


@settings(max_examples=200, deadline=None)
@given(compound=compound_rtcp(), data=st.data())
def test_lying_lengths_padding_and_cuts_never_raise(
    compound: tuple[list[RtcpPart], list[int]], data: st.DataObject
) -> None:
    parts, _wanted = compound
    mutated = mutate_rtcp(data, parts)
    found = parse_keyframe_requests(mutated)
    assert len(found) == len(set(found))
    # What precedes the first damaged byte still parses as it did: a bad packet late in
    # a compound does not hide a request before it.
    intact = b"".join(p.build() for p in parts)
    prefix_len = next((i for i, (a, b) in enumerate(zip(intact, mutated, strict=False)) if a != b), len(mutated))
    before = parse_keyframe_requests(_whole_packets(intact, prefix_len))
    assert found[: len(before)] == before


def _whole_packets(compound: bytes, limit: int) -> bytes:
    """The leading RTCP packets of ``compound`` that end before byte ``limit`` (the first damaged one)."""
    pos = 0
    while pos + 4 <= len(compound):
        end = pos + 4 + 4 * struct.unpack_from("!H", compound, pos + 2)[0]
        if end > limit or end > len(compound):
            break
        pos = end
    return compound[:pos]


def test_built_requests_are_found() -> None:
    assert parse_keyframe_requests(build_pli(1, 0xAABBCCDD) + build_fir(1, 0x01020304, 9)) == [0xAABBCCDD, 0x01020304]


def _dtls_transport() -> RTCDtlsTransport:
    """A leg's DTLS transport, never started: its RTCP handler runs without a network."""
    return RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])


@settings(max_examples=100, deadline=None)
@given(compound=compound_rtcp(), data=st.data())
@example(compound=([], []), data=None)  # LYING_REMB: fails every run, not only when drawn
def test_intercepted_rtcp_handler_never_raises_into_the_transport_loop(
    compound: tuple[list[RtcpPart], list[int]], data: st.DataObject | None
) -> None:
    parts, _ = compound
    packet = LYING_REMB if data is None else mutate_rtcp(data, parts)
    dtls = _dtls_transport()
    seen: list[bytes] = []

    async def on_rtp(data: bytes, arrival_time_ms: int) -> None:
        pass

    async def on_rtcp(data: bytes) -> None:
        seen.append(data)
        parse_keyframe_requests(data)

    refused: list[Exception] = []
    aiortc_internals.intercept_media(dtls, on_rtp, on_rtcp, refused.append)
    asyncio.run(dtls._handle_rtcp_data(packet))  # never raises: aiortc's refusal is handed over
    assert seen == [packet]
    if data is None:
        assert refused, "aiortc accepted the lying REMB: this example no longer tests the refusal path"
