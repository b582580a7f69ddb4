"""Real aiortc clients against in-process EdgeRelays (real UDP backbone, real ICE/DTLS on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from duet.edge.backbone import RouteEntry
from duet.edge.ice_hosts import restrict_ice_to
from duet.edge.relay import EdgeRelay
from duet.services.devkit.synthetic_media import FrameMarker, SyntheticCamera, SyntheticMicrophone, read_marker

KEY = b"test-cluster-key"


@dataclass
class TestClient:
    tag: int
    pc: RTCPeerConnection
    markers: list[FrameMarker] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    new_marker: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_tag(self, tag: int, timeout: float = 10.0) -> FrameMarker:
        async def wait() -> FrameMarker:
            while True:
                for m in reversed(self.markers):
                    if m.tag == tag:
                        return m
                self.new_marker.clear()
                await self.new_marker.wait()

        return await asyncio.wait_for(wait(), timeout)


async def make_client(node: EdgeRelay, tag: int, video_codecs: list[str] | None = None) -> tuple[TestClient, str]:
    """A client PeerConnection with a synthetic camera, attached to ``node``; returns it and its leg id.

    ``video_codecs`` (MIME types, e.g. ["video/H264"]) limits what the client offers; default: all of aiortc's.
    """
    restrict_ice_to(["127.0.0.1"])
    pc = RTCPeerConnection()
    client = TestClient(tag, pc)
    video = pc.addTransceiver(SyntheticCamera(tag), direction="sendrecv")
    if video_codecs is not None:
        caps = RTCRtpSender.getCapabilities("video").codecs
        video.setCodecPreferences([c for c in caps if c.mimeType in video_codecs or c.mimeType == "video/rtx"])
    pc.addTransceiver(SyntheticMicrophone(), direction="sendrecv")

    @pc.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        async def consume() -> None:
            with contextlib.suppress(Exception):
                while True:
                    frame = await track.recv()
                    if track.kind == "video":
                        marker = read_marker(frame)
                        if marker is not None:
                            client.markers.append(marker)
                            client.new_marker.set()

        client.tasks.append(asyncio.create_task(consume()))

    await pc.setLocalDescription(await pc.createOffer())
    attached = await node.attach_leg(f"session-{tag}", pc.localDescription.sdp)
    leg_id = attached.leg_id
    await pc.setRemoteDescription(RTCSessionDescription(sdp=attached.answer_sdp, type="answer"))
    leg = node.legs[leg_id]
    for _ in range(200):
        if leg.connected and pc.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    assert leg.connected, "leg did not connect"
    return client, leg_id


async def close_client(client: TestClient) -> None:
    for t in client.tasks:
        t.cancel()
    await asyncio.gather(*client.tasks, return_exceptions=True)
    await client.pc.close()


@contextlib.asynccontextmanager
async def two_edges() -> AsyncIterator[tuple[EdgeRelay, EdgeRelay]]:
    e1, e2 = EdgeRelay("fra-1", 1, KEY), EdgeRelay("vir-1", 2, KEY)
    a1 = await e1.start("127.0.0.1")
    a2 = await e2.start("127.0.0.1")
    e1.set_routes(1, [RouteEntry("vir-1", 2, "vir-1", a2, 80.0)])
    e2.set_routes(1, [RouteEntry("fra-1", 1, "fra-1", a1, 80.0)])
    try:
        yield e1, e2
    finally:
        await e1.stop()
        await e2.stop()
