"""Payload types translated between a leg's negotiation and the backbone's.

Every leg negotiates its own payload type numbers: Chromium may call VP8 96
and its RTX 97 while an aiortc client calls VP8 97 and H.264 99. A receiver
decodes a packet with whatever codec its own negotiation gave that number, so
forwarding a sender's number unchanged makes the receiver feed VP8 to an
H.264 decoder, or throw the packet away.

Like header extensions (``header_extensions.BACKBONE_IDS``), payload types
travel between legs under one fixed numbering, ``BACKBONE_CODECS``: the edge
that receives a packet from its client maps the client's number to the
backbone's, and the edge that sends it into the partner's leg maps it to that
leg's number for the same codec. RTX (RFC 4588) is a codec of its own per
media codec: its number is mapped to the receiving leg's RTX number whose
``apt`` is the same media codec.

Codec identity follows what decoders care about: the MIME type, and for H.264
the packetization mode and profile (RFC 6184; level differences are allowed
by ``level-asymmetry-allowed``). ``PayloadTypeMap`` also records what each
client sends and decodes: the matchmaker pairs two legs only when each decodes
what the other sends (``services/matchmaker/rules/media.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from duet.edge.backbone_wire import StreamKind

__all__ = [
    "BACKBONE_CODECS",
    "BackboneCodec",
    "NegotiatedCodec",
    "PayloadTypeMap",
    "codec_by_backbone_pt",
    "codec_name",
]


@dataclass(frozen=True, slots=True)
class BackboneCodec:
    """A codec the edge forwards, with its fixed payload types on the backbone."""

    name: str  # stable name, reported to the matchmaker: "VP8", "H264/42e01f", "opus"
    kind: StreamKind
    mime_type: str  # as aiortc's capabilities spell it
    parameters: tuple[tuple[str, str], ...]  # fmtp parameters as aiortc's capabilities hold them
    pt: int
    # Whether a leg may negotiate RTX for it. RTX itself never crosses the backbone: a client's
    # repair is turned back into the packet it carries at its own edge (edge/retransmission.py).
    rtx: bool


# Preference order within a kind: the first one a client offers is what it will send.
# VP8 first because every WebRTC endpoint must receive it (RFC 7742) and it is the
# codec the project's own clients encode cheapest; H.264 Constrained Baseline next.
BACKBONE_CODECS: tuple[BackboneCodec, ...] = (
    BackboneCodec("VP8", StreamKind.VIDEO, "video/VP8", (), 96, rtx=True),
    BackboneCodec(
        "H264/42e01f",
        StreamKind.VIDEO,
        "video/H264",
        (("level-asymmetry-allowed", "1"), ("packetization-mode", "1"), ("profile-level-id", "42e01f")),
        102,
        rtx=True,
    ),
    BackboneCodec(
        "H264/42001f",
        StreamKind.VIDEO,
        "video/H264",
        (("level-asymmetry-allowed", "1"), ("packetization-mode", "1"), ("profile-level-id", "42001f")),
        104,
        rtx=True,
    ),
    BackboneCodec("opus", StreamKind.AUDIO, "audio/opus", (), 111, rtx=False),
)

_BY_PT: dict[int, BackboneCodec] = {c.pt: c for c in BACKBONE_CODECS}


def codec_by_backbone_pt(pt: int) -> BackboneCodec | None:
    """The codec a backbone payload type stands for; None if unknown."""
    return _BY_PT.get(pt)


def codec_name(mime_type: str, parameters: Mapping[str, Any]) -> str | None:
    """The backbone name of a negotiated codec, or None when the edge does not forward it."""
    params = {k: str(v) for k, v in parameters.items()}
    for codec in BACKBONE_CODECS:
        if codec.mime_type.lower() != mime_type.lower():
            continue
        if codec.mime_type.lower() == "video/h264":
            # Same packetization and profile; the level may differ (level-asymmetry-allowed).
            want = dict(codec.parameters)
            if params.get("packetization-mode", "0") != want["packetization-mode"]:
                continue
            if params.get("profile-level-id", "42e01f")[:4].lower() != want["profile-level-id"][:4]:
                continue
        return codec.name
    return None


@dataclass(frozen=True, slots=True)
class NegotiatedCodec:
    """One codec of a leg's answer, as the leg's client numbers it."""

    mime_type: str
    payload_type: int
    clock_rate: int
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_rtx(self) -> bool:
        return self.mime_type.lower().endswith("/rtx")


@dataclass
class PayloadTypeMap:
    """One leg's payload types <-> the backbone's, built from its negotiated codecs.

    ``to_backbone`` maps what the client sends; ``from_backbone`` maps what the
    leg may carry to its client (media codecs only). ``send`` is the codec the
    client sends per kind (the first of the answer: a WebRTC sender uses the
    answer's first codec); ``receive`` every codec it decodes. RTX payload
    types: ``rtx_for`` (media -> its RTX) and ``apt_of`` (RTX -> its media).
    """

    to_backbone: dict[int, int] = field(default_factory=dict)
    from_backbone: dict[int, int] = field(default_factory=dict)
    kind_of: dict[int, StreamKind] = field(default_factory=dict)  # leg payload type -> kind
    rtx: set[int] = field(default_factory=set)  # leg payload types that are RTX
    rtx_for: dict[int, int] = field(default_factory=dict)
    apt_of: dict[int, int] = field(default_factory=dict)
    send: dict[StreamKind, str] = field(default_factory=dict)
    receive: dict[StreamKind, list[str]] = field(default_factory=dict)
    clock_rate: dict[StreamKind, int] = field(default_factory=dict)

    def add(self, kind: StreamKind, codecs: Iterable[NegotiatedCodec]) -> None:
        """Add one section's negotiated codecs, in the answer's order. Unknown codecs are left out."""
        codecs = list(codecs)
        media_by_pt: dict[int, BackboneCodec] = {}
        for c in codecs:
            if c.is_rtx:
                continue
            name = codec_name(c.mime_type, c.parameters)
            backbone = next((b for b in BACKBONE_CODECS if b.name == name), None)
            if backbone is None or backbone.kind != kind or c.payload_type in self.kind_of:
                continue
            media_by_pt[c.payload_type] = backbone
            self.to_backbone[c.payload_type] = backbone.pt
            self.from_backbone.setdefault(backbone.pt, c.payload_type)
            self.kind_of[c.payload_type] = kind
            self.send.setdefault(kind, backbone.name)
            self.clock_rate.setdefault(kind, c.clock_rate)
            self.receive.setdefault(kind, [])
            if backbone.name not in self.receive[kind]:
                self.receive[kind].append(backbone.name)
        for c in codecs:
            if not c.is_rtx or c.payload_type in self.kind_of:
                continue
            try:
                apt = int(c.parameters.get("apt", -1))
            except (TypeError, ValueError):
                continue
            base = media_by_pt.get(apt)
            if base is None or not base.rtx:
                continue
            self.kind_of[c.payload_type] = kind
            self.rtx.add(c.payload_type)
            self.rtx_for.setdefault(apt, c.payload_type)
            self.apt_of[c.payload_type] = apt

    def has_rtx(self) -> bool:
        return bool(self.rtx)
