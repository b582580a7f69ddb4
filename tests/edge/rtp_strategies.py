"""Hypothesis strategies for the edge's fuzz tests: well-formed RTP/RTCP, then mutated.

A well-formed packet is drawn as an ``RtpSpec`` (fixed header, CSRCs, an RFC 8285
extension block in one-byte or two-byte form, payload, RTP padding) so tests can
state what must survive a rewrite. Each extension element carries a label saying
whether its value is well-formed for the URI its ID stands for, decided here from
the RFCs' value lengths, not from the code under test. ``mutated_rtp`` then breaks
a well-formed packet the ways a buggy or hostile client (or a corrupted path)
would: truncation, bit flips, length fields that lie, padding counts past the
packet, extension elements running past their block.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap
from hypothesis import strategies as st

from duet.edge.header_extensions import (
    ABS_CAPTURE_TIME,
    ABS_SEND_TIME,
    AUDIO_LEVEL,
    BACKBONE_IDS,
    MID,
    PLAYOUT_DELAY,
    REPAIRED_RTP_STREAM_ID,
    RTP_STREAM_ID,
    TRANSMISSION_OFFSET,
    TRANSPORT_CC,
    VIDEO_ORIENTATION,
)

URIS: list[str] = list(BACKBONE_IDS)
ONE_BYTE = 0xBEDE
TWO_BYTE = 0x1000
_FIXED = struct.Struct("!BBHII")

# Well-formed value lengths per URI (RFC 5450, 6464, 7941, 8843, webrtc.org drafts).
_VALID_LENGTHS: dict[str, tuple[int, ...]] = {
    ABS_SEND_TIME: (3,),
    TRANSMISSION_OFFSET: (3,),
    AUDIO_LEVEL: (1,),
    TRANSPORT_CC: (2,),
    VIDEO_ORIENTATION: (1,),
    PLAYOUT_DELAY: (3,),
    ABS_CAPTURE_TIME: (8, 16),
}
_NAMES = (MID, RTP_STREAM_ID, REPAIRED_RTP_STREAM_ID)  # SDES names: non-empty text


def receiver_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    """aiortc's extension map for a receiver that negotiated ``ids`` (URI -> ID)."""
    hmap = HeaderExtensionsMap()
    hmap.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()])
    )
    return hmap


@dataclass(frozen=True)
class Element:
    ext_id: int
    value: bytes
    well_formed: bool  # for the URI this ID stands for in the sender's map (False if unknown)


@dataclass(frozen=True)
class RtpSpec:
    """A well-formed RTP packet, described field by field."""

    marker: bool
    payload_type: int  # 0..127, never 64..95 with the marker (RTCP's range on a muxed port)
    seq: int
    ts: int
    ssrc: int
    csrcs: tuple[int, ...]
    profile: int | None  # None: no extension block
    elements: tuple[Element, ...]
    gaps: tuple[int, ...]  # zero bytes before each element (RFC 8285 allows padding between them)
    payload: bytes
    padding: int  # RTP padding bytes, including the count byte; 0 = none

    @property
    def header_length(self) -> int:
        return 12 + 4 * len(self.csrcs) + (len(self.block()) + 4 if self.profile is not None else 0)

    @property
    def ext_offset(self) -> int:
        """Where the extension profile field starts."""
        return 12 + 4 * len(self.csrcs)

    def block(self) -> bytes:
        """The extension elements with their gaps, padded to 32 bits (without profile and length)."""
        parts = []
        for gap, e in zip(self.gaps, self.elements, strict=True):
            parts.append(b"\0" * gap)
            if self.profile == ONE_BYTE:
                parts.append(bytes(((e.ext_id << 4) | (len(e.value) - 1),)) + e.value)
            else:
                parts.append(bytes((e.ext_id, len(e.value))) + e.value)
        body = b"".join(parts)
        return body + b"\0" * (-len(body) % 4)

    def build(self) -> bytes:
        b0 = 0x80 | len(self.csrcs) | (0x10 if self.profile is not None else 0) | (0x20 if self.padding else 0)
        out = bytearray(_FIXED.pack(b0, (0x80 if self.marker else 0) | self.payload_type, self.seq, self.ts, self.ssrc))
        for c in self.csrcs:
            out += struct.pack("!I", c)
        if self.profile is not None:
            block = self.block()
            out += struct.pack("!HH", self.profile, len(block) // 4) + block
        out += self.payload
        if self.padding:
            out += b"\0" * (self.padding - 1) + bytes((self.padding,))
        return bytes(out)


@st.composite
def id_maps(draw: st.DrawFn, max_id: int = 14) -> dict[str, int]:
    """URI -> ID for a leg: some of the URIs the edge understands, distinct IDs in 1..max_id."""
    uris = draw(st.lists(st.sampled_from(URIS), unique=True, max_size=len(URIS)))
    ids = draw(st.lists(st.integers(1, max_id), unique=True, min_size=len(uris), max_size=len(uris)))
    return dict(zip(uris, ids, strict=True))


def valid_value(uri: str) -> st.SearchStrategy[bytes]:
    if uri in _NAMES:
        return st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16).map(str.encode)
    return st.sampled_from(_VALID_LENGTHS[uri]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


def invalid_value(uri: str, min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    """A value aiortc would choke on (or must not be handed) for ``uri``, ``min_size..max_size`` long."""
    if uri in _NAMES:
        # A byte >= 0x80 that starts no UTF-8 sequence is neither ASCII nor UTF-8.
        bad_text = st.tuples(st.binary(max_size=max_size - 1), st.integers(0x80, 0xBF)).map(
            lambda t: t[0] + bytes((t[1],))
        )
        return (st.just(b"") | bad_text) if min_size == 0 else bad_text
    lengths = [n for n in range(min_size, max_size + 1) if n not in _VALID_LENGTHS[uri]]
    return st.sampled_from(lengths).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@st.composite
def elements_for(draw: st.DrawFn, sender: dict[str, int], two_byte: bool) -> Element:
    """One element under the sender's IDs: a known URI with a good or bad value, or an unknown ID."""
    max_len = 255 if two_byte else 16
    min_len = 0 if two_byte else 1
    max_id = 255 if two_byte else 14
    by_id = {i: u for u, i in sender.items()}
    known = [i for i in by_id if i <= max_id]
    if known and draw(st.integers(0, 3)) > 0:
        ext_id = draw(st.sampled_from(known))
        uri = by_id[ext_id]
        if draw(st.integers(0, 3)) > 0:
            value = draw(valid_value(uri))
            return Element(ext_id, value, True)
        return Element(ext_id, draw(invalid_value(uri, min_len, max_len)), False)
    # An ID the sender's map does not have (there are always some: 10 URIs, 14 or 255 IDs).
    ext_id = draw(st.sampled_from([i for i in range(1, max_id + 1) if i not in by_id]))
    return Element(ext_id, draw(st.binary(min_size=min_len, max_size=max_len)), False)


@st.composite
def rtp_specs(draw: st.DrawFn, sender: dict[str, int] | None = None, max_payload: int = 64) -> RtpSpec:
    """A well-formed RTP packet; its extension IDs follow ``sender`` (URI -> ID) when given."""
    sender = draw(id_maps(max_id=255)) if sender is None else sender
    marker = draw(st.booleans())
    pt = draw(st.integers(0, 127))
    if marker and 64 <= pt <= 95:
        pt += 32  # 192..223 in the second byte is RTCP's range on a muxed port
    profile = draw(st.sampled_from([None, ONE_BYTE, TWO_BYTE]))
    elements: tuple[Element, ...] = ()
    gaps: tuple[int, ...] = ()
    if profile is not None:
        two_byte = profile == TWO_BYTE
        elements = tuple(draw(st.lists(elements_for(sender, two_byte), max_size=5)))
        gaps = tuple(draw(st.lists(st.sampled_from([0, 0, 0, 1, 2]), min_size=len(elements), max_size=len(elements))))
    return RtpSpec(
        marker=marker,
        payload_type=pt,
        seq=draw(st.integers(0, 0xFFFF)),
        ts=draw(st.integers(0, 0xFFFFFFFF)),
        ssrc=draw(st.integers(0, 0xFFFFFFFF)),
        csrcs=tuple(draw(st.lists(st.integers(0, 0xFFFFFFFF), max_size=15))),
        profile=profile,
        elements=elements,
        gaps=gaps,
        payload=draw(st.binary(max_size=max_payload)),
        padding=draw(st.sampled_from([0, 0, 1, 2, 4, 255])),
    )


# -- mutations ---------------------------------------------------------------------

Mutation = Callable[[st.DataObject, bytearray, RtpSpec], bytearray]


def _truncate(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    return buf[: data.draw(st.integers(0, max(0, len(buf) - 1)), label="cut at")]


def _flip_bits(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        if buf:
            i = data.draw(st.integers(0, len(buf) - 1), label="byte")
            buf[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    return buf


def _csrc_count_lies(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    if buf:
        buf[0] = (buf[0] & 0xF0) | data.draw(st.integers(0, 15), label="cc")
    return buf


def _extension_length_lies(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    if buf:
        buf[0] |= 0x10  # with or without a real block behind it
    x = spec.ext_offset
    if len(buf) >= x + 4:
        struct.pack_into("!H", buf, x + 2, data.draw(st.integers(0, 0xFFFF), label="ext words"))
    return buf


def _profile_changes(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    x = spec.ext_offset
    if spec.profile is not None and len(buf) >= x + 2:
        profile = data.draw(st.sampled_from([ONE_BYTE, TWO_BYTE, 0x1001, 0x100F, 0]) | st.integers(0, 0xFFFF))
        struct.pack_into("!H", buf, x, profile)
    return buf


def _element_runs_past_block(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    """An element's length field claims more bytes than the block (or packet) holds."""
    if spec.profile is None or not spec.elements:
        return buf
    first = spec.ext_offset + 4 + spec.gaps[0]
    if len(buf) < first + 2:
        return buf
    if spec.profile == ONE_BYTE:
        buf[first] |= 0x0F
    else:
        buf[first + 1] = 0xFF
    return buf


def _padding_lies(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    if buf:
        buf[0] |= 0x20
        buf[-1] = data.draw(st.sampled_from([0, len(buf) & 0xFF, 255]) | st.integers(0, 255), label="pad count")
    return buf


def _version_changes(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    if buf:
        buf[0] = (buf[0] & 0x3F) | (data.draw(st.sampled_from([0, 1, 3]), label="version") << 6)
    return buf


def _rtcp_range_type(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    if len(buf) >= 2:
        buf[1] = data.draw(st.integers(192, 223), label="second byte")
    return buf


def _append_garbage(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    return buf + data.draw(st.binary(min_size=1, max_size=8), label="garbage")


def _one_byte_id_15(data: st.DataObject, buf: bytearray, spec: RtpSpec) -> bytearray:
    """RFC 8285's reserved ID 15 in a one-byte block (aiortc parses it as an element)."""
    if spec.profile == ONE_BYTE and spec.elements and len(buf) > spec.ext_offset + 4 + spec.gaps[0]:
        buf[spec.ext_offset + 4 + spec.gaps[0]] |= 0xF0
    return buf


MUTATIONS: Sequence[Mutation] = (
    _truncate,
    _flip_bits,
    _csrc_count_lies,
    _extension_length_lies,
    _profile_changes,
    _element_runs_past_block,
    _padding_lies,
    _version_changes,
    _rtcp_range_type,
    _append_garbage,
    _one_byte_id_15,
)


def mutate(data: st.DataObject, spec: RtpSpec) -> bytes:
    """``spec``'s packet with one to three mutations applied in turn."""
    buf = bytearray(spec.build())
    if len(buf) < 12:  # every spec builds at least the fixed header
        raise AssertionError("spec built a short packet")
    for mutation in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3), label="mutations"):
        buf = mutation(data, buf, spec)
    return bytes(buf)


def packet_bytes(data: st.DataObject, spec: RtpSpec) -> bytes:
    """Arbitrary bytes, a well-formed packet, or a mutated one, in roughly equal parts."""
    choice = data.draw(st.sampled_from(["well-formed", "mutated", "mutated", "arbitrary"]), label="source")
    if choice == "arbitrary":
        return data.draw(st.binary(max_size=80), label="arbitrary")
    if choice == "well-formed":
        return spec.build()
    return mutate(data, spec)


# -- RTCP --------------------------------------------------------------------------

RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_RTPFB, RTCP_PSFB = 200, 201, 202, 203, 205, 206

# A REMB (RTCP PSFB FMT=15) whose SSRC count says 3 but which carries none: aiortc's
# RTCP router reads the SSRCs with struct.unpack_from and only catches ValueError.
LYING_REMB = struct.pack("!BBHII", 0x80 | 15, RTCP_PSFB, 4, 1, 0) + b"REMB" + bytes((3, 0, 0, 1))


@dataclass(frozen=True)
class RtcpPart:
    """One RTCP packet of a compound: header fields and body, lengths honest unless mutated."""

    count_or_fmt: int
    ptype: int
    body: bytes
    padding: int = 0

    def build(self) -> bytes:
        pad = b"\0" * (self.padding - 1) + bytes((self.padding,)) if self.padding else b""
        body = self.body + pad
        b0 = 0x80 | (0x20 if self.padding else 0) | self.count_or_fmt
        return struct.pack("!BBH", b0, self.ptype, len(body) // 4) + body


u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def keyframe_requests(draw: st.DrawFn) -> tuple[RtcpPart, list[int]]:
    """A PLI or FIR and the media SSRCs it asks for."""
    sender = draw(u32)
    if draw(st.booleans()):
        media = draw(u32)
        return RtcpPart(1, RTCP_PSFB, struct.pack("!II", sender, media), draw(st.sampled_from([0, 4, 8]))), [media]
    targets = draw(st.lists(u32, min_size=1, max_size=4))
    fci = b"".join(struct.pack("!IB3x", t, draw(st.integers(0, 255))) for t in targets)
    return RtcpPart(4, RTCP_PSFB, struct.pack("!II", sender, 0) + fci, draw(st.sampled_from([0, 4]))), targets


@st.composite
def other_rtcp(draw: st.DrawFn) -> RtcpPart:
    """Reports and feedback a client sends alongside keyframe requests (none of them ask for one)."""
    kind = draw(st.sampled_from(["rr", "sr", "sdes", "bye", "nack", "remb", "app"]))
    if kind == "rr":
        n = draw(st.integers(0, 2))
        return RtcpPart(n, RTCP_RR, draw(st.binary(min_size=4 + 24 * n, max_size=4 + 24 * n)))
    if kind == "sr":
        return RtcpPart(0, RTCP_SR, draw(st.binary(min_size=24, max_size=24)))
    if kind == "sdes":
        cname = draw(st.binary(min_size=1, max_size=20))
        chunk = draw(u32).to_bytes(4, "big") + bytes((1, len(cname))) + cname + b"\0"
        return RtcpPart(1, RTCP_SDES, chunk + b"\0" * (-len(chunk) % 4))
    if kind == "bye":
        n = draw(st.integers(0, 3))
        return RtcpPart(
            n, RTCP_BYE, b"".join(s.to_bytes(4, "big") for s in draw(st.lists(u32, min_size=n, max_size=n)))
        )
    if kind == "nack":
        return RtcpPart(1, RTCP_RTPFB, struct.pack("!IIHH", draw(u32), draw(u32), draw(st.integers(0, 0xFFFF)), 0))
    if kind == "remb":
        ssrcs = draw(st.lists(u32, max_size=3))
        fci = b"REMB" + bytes((len(ssrcs), 0x10, 0, 1)) + b"".join(s.to_bytes(4, "big") for s in ssrcs)
        return RtcpPart(15, RTCP_PSFB, struct.pack("!II", draw(u32), 0) + fci)
    body = draw(st.binary(max_size=16))
    return RtcpPart(0, 204, body + b"\0" * (-len(body) % 4))


@st.composite
def compound_rtcp(draw: st.DrawFn) -> tuple[list[RtcpPart], list[int]]:
    """A well-formed compound packet and the SSRCs its PLIs/FIRs ask for, in order, once each."""
    parts: list[RtcpPart] = []
    wanted: list[int] = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            part, targets = draw(keyframe_requests())
            parts.append(part)
            for t in targets:
                if t not in wanted:
                    wanted.append(t)
        else:
            parts.append(draw(other_rtcp()))
    return parts, wanted


def mutate_rtcp(data: st.DataObject, parts: list[RtcpPart]) -> bytes:
    """A compound packet with a lying length, a bad padding count, a cut or flipped bits."""
    buf = bytearray(b"".join(p.build() for p in parts))
    how = data.draw(st.sampled_from(["length", "padding", "truncate", "flip", "version", "remb count"]), label="how")
    starts = [0]
    for p in parts[:-1]:
        starts.append(starts[-1] + len(p.build()))
    at = data.draw(st.sampled_from(starts), label="part")
    if how == "length":
        struct.pack_into("!H", buf, at + 2, data.draw(st.integers(0, 0xFFFF), label="words"))
    elif how == "padding":
        buf[at] |= 0x20
        buf[-1] = data.draw(st.integers(0, 255), label="pad count")
    elif how == "truncate":
        buf = buf[: data.draw(st.integers(0, len(buf) - 1), label="cut")]
    elif how == "flip":
        i = data.draw(st.integers(0, len(buf) - 1), label="byte")
        buf[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    elif how == "version":
        buf[at] = (buf[at] & 0x3F) | (data.draw(st.sampled_from([0, 1, 3]), label="version") << 6)
    else:  # a REMB that claims more SSRCs than it carries
        remb = RtcpPart(
            15, RTCP_PSFB, struct.pack("!II", 1, 0) + b"REMB" + bytes((data.draw(st.integers(1, 255)), 0, 0, 1))
        )
        buf[at:at] = remb.build()
    return bytes(buf)
