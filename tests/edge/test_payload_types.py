"""Payload types between two legs' numberings: unit tests and properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from duet.edge.backbone_wire import StreamKind
from duet.edge.payload_types import (
    BACKBONE_CODECS,
    NegotiatedCodec,
    PayloadTypeMap,
    codec_by_backbone_pt,
    codec_name,
)

H264_CB = {"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": "42e01f"}
H264_B = {"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": "42001f"}


def chromium_like() -> PayloadTypeMap:
    """Chromium 156's numbering (VP8 96, RTX 97; H.264 CB 109, RTX 114; Baseline 103, RTX 104)."""
    pmap = PayloadTypeMap()
    pmap.add(
        StreamKind.VIDEO,
        [
            NegotiatedCodec("video/VP8", 96, 90000),
            NegotiatedCodec("video/rtx", 97, 90000, {"apt": 96}),
            NegotiatedCodec("video/H264", 109, 90000, H264_CB),
            NegotiatedCodec("video/rtx", 114, 90000, {"apt": 109}),
            NegotiatedCodec("video/H264", 103, 90000, H264_B),
            NegotiatedCodec("video/rtx", 104, 90000, {"apt": 103}),
        ],
    )
    pmap.add(StreamKind.AUDIO, [NegotiatedCodec("audio/opus", 111, 48000, {"minptime": 10})])
    return pmap


def aiortc_like() -> PayloadTypeMap:
    """aiortc 1.x's numbering (VP8 97, RTX 98; H.264 Baseline 99, RTX 100; CB 101, RTX 102; Opus 96)."""
    pmap = PayloadTypeMap()
    pmap.add(
        StreamKind.VIDEO,
        [
            NegotiatedCodec("video/VP8", 97, 90000),
            NegotiatedCodec("video/rtx", 98, 90000, {"apt": 97}),
            NegotiatedCodec("video/H264", 99, 90000, H264_B),
            NegotiatedCodec("video/rtx", 100, 90000, {"apt": 99}),
            NegotiatedCodec("video/H264", 101, 90000, H264_CB),
            NegotiatedCodec("video/rtx", 102, 90000, {"apt": 101}),
        ],
    )
    pmap.add(StreamKind.AUDIO, [NegotiatedCodec("audio/opus", 96, 48000)])
    return pmap


def test_codec_names_follow_packetization_and_profile_not_level() -> None:
    assert codec_name("video/VP8", {}) == "VP8"
    assert codec_name("video/h264", H264_CB) == "H264/42e01f"
    assert codec_name("video/H264", {**H264_B, "profile-level-id": "42001e"}) == "H264/42001f"  # another level
    assert codec_name("video/H264", {**H264_CB, "packetization-mode": "0"}) is None
    assert codec_name("video/H264", {**H264_CB, "profile-level-id": "4d001f"}) is None  # Main profile
    assert codec_name("video/VP9", {}) is None
    assert codec_name("audio/OPUS", {}) == "opus"


def test_chromium_vp8_reaches_aiortc_under_aiortcs_numbers_and_rtx_follows_its_codec() -> None:
    chromium, aiortc = chromium_like(), aiortc_like()
    for sent, expected in [(96, 97), (109, 101), (103, 99), (111, 96)]:
        assert aiortc.from_backbone[chromium.to_backbone[sent]] == expected
        # A repair of it reaches aiortc as aiortc's RTX for that same codec.
        if sent != 111:
            assert aiortc.apt_of[aiortc.rtx_for[expected]] == expected
    # Chromium's RTX answers are turned back into the media they carry: its apt says which.
    assert {rtx: chromium.apt_of[rtx] for rtx in (97, 114, 104)} == {97: 96, 114: 109, 104: 103}
    assert 97 not in chromium.to_backbone  # RTX itself never crosses the backbone
    assert chromium.send == {StreamKind.VIDEO: "VP8", StreamKind.AUDIO: "opus"}
    assert chromium.receive[StreamKind.VIDEO] == ["VP8", "H264/42e01f", "H264/42001f"]
    assert chromium.rtx == {97, 114, 104}
    assert chromium.kind_of[111] == StreamKind.AUDIO and chromium.kind_of[114] == StreamKind.VIDEO


def test_rtx_without_its_codec_and_unknown_codecs_are_left_out() -> None:
    pmap = PayloadTypeMap()
    pmap.add(
        StreamKind.VIDEO,
        [
            NegotiatedCodec("video/VP9", 98, 90000, {"profile-id": 0}),
            NegotiatedCodec("video/rtx", 99, 90000, {"apt": 98}),  # RTX of a codec we do not forward
            NegotiatedCodec("video/rtx", 100, 90000, {"apt": "junk"}),
            NegotiatedCodec("video/H264", 102, 90000, H264_CB),
        ],
    )
    assert pmap.send[StreamKind.VIDEO] == "H264/42e01f"
    assert set(pmap.kind_of) == {102} and not pmap.rtx


@st.composite
def numberings(draw: st.DrawFn) -> tuple[PayloadTypeMap, dict[str, tuple[int, int | None]]]:
    """A leg that negotiated a random subset of the codecs, in random order, under random dynamic numbers."""
    codecs = draw(st.permutations([c for c in BACKBONE_CODECS if c.kind == StreamKind.VIDEO]))
    codecs = codecs[: draw(st.integers(1, len(codecs)))]
    pts = draw(st.lists(st.integers(96, 127), min_size=2 * len(codecs), max_size=2 * len(codecs), unique=True))
    with_rtx = draw(st.lists(st.booleans(), min_size=len(codecs), max_size=len(codecs)))
    negotiated, numbers = [], {}
    for i, (codec, rtx) in enumerate(zip(codecs, with_rtx, strict=True)):
        pt, rtx_pt = pts[2 * i], pts[2 * i + 1]
        negotiated.append(NegotiatedCodec(codec.mime_type, pt, 90000, dict(codec.parameters)))
        if rtx:
            negotiated.append(NegotiatedCodec("video/rtx", rtx_pt, 90000, {"apt": pt}))
        numbers[codec.name] = (pt, rtx_pt if rtx else None)
    pmap = PayloadTypeMap()
    pmap.add(StreamKind.VIDEO, negotiated)
    return pmap, numbers


@given(numberings(), numberings())
def test_any_two_numberings_map_codec_to_same_codec(
    a: tuple[PayloadTypeMap, dict[str, tuple[int, int | None]]],
    b: tuple[PayloadTypeMap, dict[str, tuple[int, int | None]]],
) -> None:
    a_map, a_numbers = a
    b_map, b_numbers = b
    assert a_map.send[StreamKind.VIDEO] == next(iter(a_numbers))  # the answer's first codec is the one sent
    for name, (a_pt, a_rtx) in a_numbers.items():
        backbone = a_map.to_backbone[a_pt]
        found = codec_by_backbone_pt(backbone)
        assert found is not None and found.name == name
        if name in b_numbers:
            assert b_map.from_backbone[backbone] == b_numbers[name][0]
        else:
            assert backbone not in b_map.from_backbone  # dropped at the receiver, never sent as another codec
        if a_rtx is not None:
            assert a_map.apt_of[a_rtx] == a_pt  # a's repairs unwrap to this codec's packets
        b_rtx = b_numbers.get(name, (0, None))[1]
        if b_rtx is not None:
            # ... which reach b wrapped in b's RTX whose apt is the same codec
            assert b_map.rtx_for[b_map.from_backbone[backbone]] == b_rtx
