"""The greeter bot of `duet up` against hostile partners, with real parts: a
LocalCluster (PostgreSQL, routing, matchmaker, three edge processes), the real
Greeter, and raw aiortc peers that misbehave on purpose. After each of them an
ordinary SDK client still gets a call with the bot and decodes its frames."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from duet.edge import aiortc_internals
from duet.edge.ice_hosts import ice_restricted_from_env
from duet.edge.leg import SilentTrack
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.tokens import Role
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.greeter import BOT_CAMERA_TAG, BOT_USER_ID, Backoff, Greeter
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import edge_pb2, edge_pb2_grpc, matchmaker_pb2, matchmaker_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

# Short, so a partner whose video never arrives costs the module seconds, not tens of them.
FRAME_TIMEOUT_S = 4.0
STEP_TIMEOUT_S = 20.0
ABS_SEND_TIME_ID = next(e.id for e in HEADER_EXTENSIONS["video"] if e.uri.endswith("/abs-send-time"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-greeter")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def greeter(cluster: ClusterInfo) -> AsyncIterator[Greeter]:
    bot = Greeter(
        cluster.matchmaker,
        client_ip=DEMO_CLIENT_IPS["Singapore"],
        frame_timeout=FRAME_TIMEOUT_S,
        backoff=Backoff(first_s=0.1, max_s=1.0),
        token=cluster.user_tokens(BOT_USER_ID),
    )
    task = asyncio.create_task(bot.run())
    yield bot
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled(), "the bot's run() ended on its own"


async def a_caller_greets_the_bot(cluster: ClusterInfo, user_id: str) -> None:
    """An ordinary SDK client gets a call with the bot and decodes the bot's own frames."""
    caller = synthetic_client(
        cluster.matchmaker,
        user_id,
        user_id,
        tag=4000 + len(user_id),
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        frame_timeout=15.0,
        match_timeout=30.0,
        token=cluster.user_tokens(user_id),
    )
    try:
        await caller.connect()
        result = await caller.find_partner()
    finally:
        await caller.leave()
    assert result.partner_display_name == "greeter bot"
    assert result.first_marker is not None and result.first_marker.tag == BOT_CAMERA_TAG


# -- hostile partners -------------------------------------------------------------


def unparsable_rtp(payload_type: int, ssrc: int, seq: int) -> bytes:
    """Well-formed RTP whose abs-send-time extension is 1 byte instead of 3.

    Forwarded as it is, aiortc on the receiving leg would unpack it with
    struct and raise struct.error, ending that transport's receive loop; the
    edge removes the malformed element before it reaches the partner.
    """
    header = struct.pack("!BBHII", 0x90, payload_type & 0x7F, seq, seq * 960, ssrc)  # V=2, X=1
    extension = struct.pack("!HH", 0xBEDE, 1) + bytes([ABS_SEND_TIME_ID << 4, 0xAA, 0, 0])  # one-byte form, L=0
    return header + extension + b"\xf8\xff\xfe"


@dataclass
class RawPeer:
    """A partner that speaks the Session protocol itself, over a PeerConnection that sends no media of its own."""

    channel: grpc.aio.Channel
    call: grpc.aio.StreamStreamCall
    pc: RTCPeerConnection
    transceivers: dict[str, RTCRtpTransceiver]

    @classmethod
    async def connect(cls, cluster: ClusterInfo, user_id: str) -> RawPeer:
        ice_restricted_from_env()
        channel = grpc.aio.insecure_channel(cluster.matchmaker)
        call = matchmaker_pb2_grpc.MatchmakerStub(channel).Session(
            metadata=(("x-forwarded-for", DEMO_CLIENT_IPS["Virginia"]), *bearer_metadata(cluster.user_token(user_id)))
        )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer = cls(channel, call, pc, {})
        await peer.send(hello=matchmaker_pb2.Hello(user_id=user_id, display_name=user_id))
        await peer.expect("edge_assigned")
        connected = asyncio.Event()
        pc.on("connectionstatechange", lambda: pc.connectionState == "connected" and connected.set())
        for kind, mime in (("video", "video/VP8"), ("audio", "audio/opus")):
            t = pc.addTransceiver(SilentTrack(kind), direction="sendrecv")
            t.setCodecPreferences([c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime])
            peer.transceivers[kind] = t
        await pc.setLocalDescription(await pc.createOffer())
        await peer.send(offer=matchmaker_pb2.LegOffer(sdp=pc.localDescription.sdp))
        answer = (await peer.expect("answer")).answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        await asyncio.wait_for(connected.wait(), STEP_TIMEOUT_S)
        return peer

    async def send(self, **message: object) -> None:
        await self.call.write(matchmaker_pb2.ClientMessage(**message))  # type: ignore[arg-type]

    async def expect(self, kind: str) -> matchmaker_pb2.ServerMessage:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                message = await self.call.read()
                assert message is not grpc.aio.EOF, f"the stream ended while waiting for {kind}"
                if message.WhichOneof("msg") == kind:
                    return message

    async def match(self) -> matchmaker_pb2.Matched:
        await self.send(find_partner=matchmaker_pb2.FindPartner(leg_connected=time.time() * 1000))
        matched = (await self.expect("matched")).matched
        assert matched.partner_display_name == "greeter bot"
        return matched

    async def send_unparsable_rtp(self, packets: int = 5) -> None:
        audio = self.transceivers["audio"]
        payload_type = aiortc_internals.negotiated_codecs(audio)[0].payloadType
        ssrc = aiortc_internals.sender_ssrc(audio.sender)
        for seq in range(1, packets + 1):  # a few, in case loopback drops one under load
            await audio.sender.transport._send_rtp(unparsable_rtp(payload_type, ssrc, seq))
            await asyncio.sleep(0.02)

    async def leave(self) -> None:
        try:
            await self.send(leave=matchmaker_pb2.Leave())
            await self.call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the stream is already over
        self.call.cancel()
        await self.pc.close()
        await self.channel.close()


# -- tests ------------------------------------------------------------------------


async def test_the_bot_greets_an_ordinary_caller(cluster: ClusterInfo, greeter: Greeter) -> None:
    await a_caller_greets_the_bot(cluster, "caller-first")
    assert greeter.stats.sessions == 1 and not greeter.stats.rebuilds


async def test_a_partner_who_leaves_at_once(cluster: ClusterInfo, greeter: Greeter) -> None:
    sessions = greeter.stats.sessions
    peer = await RawPeer.connect(cluster, "hostile-leaver")
    try:
        await peer.match()
    finally:
        await peer.leave()
    await a_caller_greets_the_bot(cluster, "caller-after-leaver")
    # The call ended under the bot with its stream and leg fine: same session, no rebuild.
    assert greeter.stats.sessions == sessions


async def test_a_partner_whose_video_never_arrives(cluster: ClusterInfo, greeter: Greeter) -> None:
    rebuilds = len(greeter.stats.rebuilds)
    peer = await RawPeer.connect(cluster, "hostile-silent")
    try:
        await peer.match()
        # The bot gives up on the call (and on its leg, which it cannot tell from a dead one).
        ended = (await peer.expect("call_ended")).call_ended
        assert ended.reason == "partner_left"
    finally:
        await peer.leave()
    await a_caller_greets_the_bot(cluster, "caller-after-silent")
    assert len(greeter.stats.rebuilds) == rebuilds + 1


async def test_a_partner_whose_media_the_bots_transport_cannot_parse(
    cluster: ClusterInfo, greeter: Greeter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiortc")
    rebuilds = len(greeter.stats.rebuilds)
    dropped_before = await extensions_dropped(cluster)
    peer = await RawPeer.connect(cluster, "hostile-garbage")
    try:
        await peer.match()
        await peer.send_unparsable_rtp()
        ended = (await peer.expect("call_ended")).call_ended
        assert ended.reason == "partner_left"
    finally:
        await peer.leave()
    # The edge took the element out before it reached the bot: its transport never
    # choked on it. (This partner sends no video, so the bot still gives up on the
    # call and starts afresh, as with the silent partner.)
    assert await extensions_dropped(cluster) > dropped_before
    assert not any("struct.error" in r.getMessage() for r in caplog.records if r.name.startswith("aiortc"))
    await a_caller_greets_the_bot(cluster, "caller-after-garbage")
    assert len(greeter.stats.rebuilds) == rebuilds + 1


async def extensions_dropped(cluster: ClusterInfo) -> int:
    """Header-extension elements the edges removed (malformed or not negotiated), all edges together."""
    total = 0
    for address in cluster.edges.values():
        async with grpc.aio.insecure_channel(address) as channel:
            stats = await edge_pb2_grpc.EdgeControlStub(channel).GetStats(
                edge_pb2.GetStatsRequest(),
                timeout=5,
                metadata=bearer_metadata(cluster.service_token(Role.OPS_READ, "greeter-test")),
            )
        total += sum(n for reason, n in stats.dropped.items() if "extension" in reason)
    return total
