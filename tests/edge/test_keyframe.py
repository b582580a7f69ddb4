"""Keyframe detection on real VP8 RTP from aiortc's encoder and packetizer."""

from __future__ import annotations

from fractions import Fraction

from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from duet.edge.keyframe import is_h264_keyframe_start, is_keyframe_start, is_vp8_keyframe_start
from duet.services.devkit.synthetic_media import SyntheticCamera

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"packetization-mode": "1", "level-asymmetry-allowed": "1", "profile-level-id": "42e01f"},
)


def packets(force_keyframe: bool, encoder, camera: SyntheticCamera, counter: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    frame = camera.make_frame(counter)
    frame.pts = counter * 3000
    frame.time_base = Fraction(1, 90000)
    payloads, ts = encoder.encode(frame, force_keyframe)
    out = []
    for seq, payload in enumerate(payloads):
        p = RtpPacket(payload_type=97, sequence_number=seq, timestamp=ts, ssrc=1234)
        p.payload = payload
        out.append(p.serialize())
    return out


def test_keyframe_start_is_recognised_and_inter_frames_are_not() -> None:
    encoder = get_encoder(VP8)
    camera = SyntheticCamera(tag=9)
    key = packets(True, encoder, camera, 0)
    assert is_vp8_keyframe_start(key[0])
    assert not any(is_vp8_keyframe_start(p) for p in key[1:])
    inter = packets(False, encoder, camera, 1)
    assert not any(is_vp8_keyframe_start(p) for p in inter)
    forced = packets(True, encoder, camera, 2)
    assert is_vp8_keyframe_start(forced[0])


def test_h264_keyframe_start_is_recognised_in_a_real_encoders_packets() -> None:
    encoder = get_encoder(H264)
    camera = SyntheticCamera(tag=9)
    key = packets(True, encoder, camera, 0)
    assert is_h264_keyframe_start(key[0])
    inter = packets(False, encoder, camera, 1)
    assert inter and not any(is_h264_keyframe_start(p) for p in inter)


@given(st.binary(max_size=64))
def test_garbage_never_raises(data: bytes) -> None:
    assert is_vp8_keyframe_start(data) in (True, False)


def _rtp(payload: bytes, pt: int = 102) -> bytes:
    return bytes([0x80, pt, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9]) + payload


def test_h264_keyframe_starts_alone_aggregated_or_as_first_fragment() -> None:
    idr, sps, pps, slice_ = 0x65, 0x67, 0x68, 0x41  # NAL headers (NRI 3 / 2, types 5, 7, 8, 1)
    assert is_h264_keyframe_start(_rtp(bytes([sps, 0x42, 0xE0, 0x1F])))
    assert is_h264_keyframe_start(_rtp(bytes([idr, 0x88, 0x84])))
    assert not is_h264_keyframe_start(_rtp(bytes([slice_, 0x9A])))
    assert not is_h264_keyframe_start(_rtp(bytes([pps, 0xCE])))
    stap = bytes([0x78]) + b"\x00\x04" + bytes([sps, 0x42, 0xE0, 0x1F]) + b"\x00\x02" + bytes([pps, 0xCE])
    assert is_h264_keyframe_start(_rtp(stap))
    assert not is_h264_keyframe_start(_rtp(bytes([0x78]) + b"\x00\x02" + bytes([pps, 0xCE])))
    assert not is_h264_keyframe_start(_rtp(bytes([0x78]) + b"\x00\x09" + bytes([sps, 0x42])))  # size past the end
    fu_indicator = 0x7C  # NRI 3, type 28
    assert is_h264_keyframe_start(_rtp(bytes([fu_indicator, 0x80 | 5, 0x88])))  # S bit, IDR
    assert not is_h264_keyframe_start(_rtp(bytes([fu_indicator, 0x00 | 5, 0x88])))  # a middle fragment
    assert not is_h264_keyframe_start(_rtp(bytes([fu_indicator, 0x80 | 1, 0x88])))  # first fragment of a P slice
    assert not is_h264_keyframe_start(_rtp(bytes([fu_indicator])))


def test_keyframe_rule_follows_the_backbone_payload_type() -> None:
    vp8_key = bytes([0x10, 0x00, 0x00, 0x00])  # S=1, PID=0; VP8 header P=0
    assert is_keyframe_start(_rtp(vp8_key, pt=96))
    assert not is_keyframe_start(_rtp(vp8_key, pt=97))  # RTX never opens the gate
    assert is_keyframe_start(_rtp(bytes([0x65, 0x88]), pt=102))
    assert is_keyframe_start(_rtp(bytes([0x65, 0x88]), pt=104))
    assert not is_keyframe_start(_rtp(bytes([0x65, 0x88]), pt=111))  # audio
    assert not is_keyframe_start(_rtp(bytes([0x65, 0x88]), pt=35))  # not a backbone payload type
    assert not is_keyframe_start(b"\x80")


@given(st.binary(max_size=64), st.sampled_from([96, 97, 102, 103, 104, 111, 0]))
def test_keyframe_rules_never_raise(payload: bytes, pt: int) -> None:
    assert is_keyframe_start(_rtp(payload, pt)) in (True, False)
    assert is_h264_keyframe_start(payload) in (True, False)
