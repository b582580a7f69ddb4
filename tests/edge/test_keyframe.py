"""Keyframe detection on real VP8 RTP from aiortc's encoder and packetizer."""

from __future__ import annotations

from fractions import Fraction

from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from duet.edge.keyframe import is_vp8_keyframe_start
from duet.services.devkit.synthetic_media import SyntheticCamera

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)


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


@given(st.binary(max_size=64))
def test_garbage_never_raises(data: bytes) -> None:
    assert is_vp8_keyframe_start(data) in (True, False)
