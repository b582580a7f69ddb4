"""The client SDK's pieces (stage arithmetic, event dispatch, ICE restriction) and its
protocol against a fake matchmaker whose "edge" is an aiortc peer in the same process."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack

from duet.edge import ice_hosts as ice
from duet.services.client import (
    STAGES,
    DuetClient,
    DuetClientError,
    LegState,
    MatchPreferences,
    PartnerFrame,
    SessionInbox,
    StreamEnded,
    build_call_result,
    client_report_stages,
    now_ms,
    stages_from_proto,
    stages_to_proto,
)
from duet.services.devkit.synthetic_media import FrameMarker, SyntheticCamera, SyntheticMicrophone, synthetic_client
from duet.v1 import common_pb2, matchmaker_pb2, matchmaker_pb2_grpc
from tests.services.client.reading_rule import ReadingRule


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ice.ENV_VAR, raising=False)
    ice.restrict_ice_to(["127.0.0.1"])
    yield
    ice.restore_ice_defaults()


# --- stage arithmetic ---------------------------------------------------------


def matched_message(**stages: float) -> matchmaker_pb2.Matched:
    return matchmaker_pb2.Matched(
        call_id="c1",
        partner_display_name="Ana",
        partner_region="Frankfurt",
        route=["fra-1", "sin-1"],
        route_rtt_ms=160.0,
        stages=common_pb2.StageTimes(**stages),
    )


CLIENT = {"session_open": 100.0, "edge_assigned": 110.0, "leg_connected": 250.0, "queued": 262.0}


def test_call_result_merges_stages_and_derives_connect_and_total() -> None:
    frame = PartnerFrame(marker=FrameMarker(7, 3), at_ms=1460.0, frames_decoded=2)
    result = build_call_result(
        matched_message(queued=260.0, matched=1000.0, route_picked=1001.0, bridged=1020.0),
        client_stages=CLIENT,
        queued_at_server=259.0,
        first_frame=frame,
    )
    assert list(result.stages) == list(STAGES)
    assert result.stages == {
        "session_open": 100.0,
        "edge_assigned": 110.0,
        "leg_connected": 250.0,
        "queued": 260.0,  # the server's, from Matched
        "matched": 1000.0,
        "route_picked": 1001.0,
        "bridged": 1020.0,
        "first_packet_at_edge": 0.0,
        "first_frame": 1460.0,
    }
    assert result.connect_ms == pytest.approx(460.0)
    assert result.total_ms == pytest.approx(1200.0)
    assert (result.call_id, result.partner_display_name, result.partner_region) == ("c1", "Ana", "Frankfurt")
    assert result.route == ["fra-1", "sin-1"] and result.route_rtt_ms == 160.0
    assert result.first_marker == FrameMarker(7, 3) and result.frames_decoded == 2
    assert result.client_stages["queued"] == 262.0 and result.client_stages["first_frame"] == 1460.0


def test_queued_falls_back_to_the_queued_message_then_to_the_client() -> None:
    frame = PartnerFrame(marker=FrameMarker(7, 3), at_ms=1500.0, frames_decoded=1)
    r = build_call_result(
        matched_message(matched=1000.0), client_stages=CLIENT, queued_at_server=255.0, first_frame=frame
    )
    assert r.stages["queued"] == 255.0 and r.total_ms == pytest.approx(1245.0)
    r = build_call_result(matched_message(matched=1000.0), client_stages=CLIENT, first_frame=frame)
    assert r.stages["queued"] == 262.0 and r.total_ms == pytest.approx(1238.0)


def test_no_frame_means_no_connect_time() -> None:
    r = build_call_result(matched_message(queued=260.0, matched=1000.0), client_stages=CLIENT, first_frame=None)
    assert r.connect_ms is None and r.total_ms is None and r.first_marker is None
    assert r.stages["first_frame"] == 0.0 and r.frames_decoded == 0


def test_stage_proto_round_trip_and_report_leaves_server_stages_out() -> None:
    stages = {name: float(i + 1) for i, name in enumerate(STAGES)}
    assert stages_from_proto(stages_to_proto(stages)) == stages
    report = client_report_stages({**stages})
    assert report.session_open == 1.0 and report.leg_connected == 3.0 and report.first_frame == 9.0
    assert report.queued == 0.0 and report.matched == 0.0 and report.bridged == 0.0


# --- event dispatch -----------------------------------------------------------


def server(**kwargs) -> matchmaker_pb2.ServerMessage:
    return matchmaker_pb2.ServerMessage(**kwargs)


async def test_inbox_returns_what_is_expected_and_skips_known_call_ends() -> None:
    inbox = SessionInbox()
    inbox.finished_calls.add("old")
    inbox.put(server(call_ended=matchmaker_pb2.CallEnded(call_id="old", reason="next")))
    inbox.put(LegState("checking", 1.0))
    inbox.put(server(answer=matchmaker_pb2.LegAnswer(leg_id="x")))  # unexpected: logged, skipped
    inbox.put(server(queued=matchmaker_pb2.Queued(ticket_id="t")))
    event = await inbox.expect(("queued", "matched"), timeout=1, waiting_for="a match")
    assert event.queued.ticket_id == "t"
    frame = PartnerFrame(FrameMarker(1, 2), 3.0, 1)
    inbox.put(frame)
    assert await inbox.expect(("partner_frame",), timeout=1, waiting_for="a frame") is frame


async def test_inbox_turns_an_unexpected_call_end_into_an_error() -> None:
    inbox = SessionInbox()
    inbox.put(server(call_ended=matchmaker_pb2.CallEnded(call_id="c9", reason="partner_left")))
    with pytest.raises(DuetClientError, match="c9 ended while waiting for the first frame: partner_left") as info:
        await inbox.expect(("partner_frame",), timeout=1, waiting_for="the first frame")
    assert info.value.reason == "partner_left"


async def test_inbox_stream_end_is_sticky_and_leg_failure_raises() -> None:
    inbox = SessionInbox()
    error = DuetClientError("gone", code=grpc.StatusCode.UNAVAILABLE, details="gone")
    inbox.put(StreamEnded(error))
    for _ in range(2):
        with pytest.raises(DuetClientError) as info:
            await inbox.expect(("matched",), timeout=1, waiting_for="a match")
        assert info.value is error
    inbox = SessionInbox()
    inbox.put(LegState("failed", 1.0))
    with pytest.raises(DuetClientError, match="leg to the edge is failed"):
        await inbox.expect(("matched",), timeout=1, waiting_for="a match")


async def test_inbox_times_out_clearly() -> None:
    with pytest.raises(DuetClientError, match=r"timed out after 0\.1 s waiting for LegAnswer"):
        await SessionInbox().expect(("answer",), timeout=0.1, waiting_for="LegAnswer")


# --- the protocol against a fake matchmaker and edge --------------------------


class PartnerVideo(VideoStreamTrack):
    """What a fake edge sends into the leg: nothing until bridged, then a partner's camera,
    nothing again once unbridged (as a real edge between two partners)."""

    def __init__(self) -> None:
        super().__init__()
        self._camera: SyntheticCamera | None = None
        self._bridged = asyncio.Event()
        self._counter = 0

    def bridge(self, tag: int) -> None:
        self._camera = SyntheticCamera(tag)
        self._bridged.set()

    def unbridge(self) -> None:
        self._bridged.clear()

    async def recv(self):
        await self._bridged.wait()
        pts, time_base = await self.next_timestamp()
        frame = self._camera.make_frame(self._counter)
        self._counter += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


class FakeEdge:
    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = PartnerVideo()
        self.tasks: list[asyncio.Task[None]] = []

    async def accept(self, offer: str) -> str:
        self.pc.addTransceiver(self.video, direction="sendrecv")
        self.pc.addTransceiver(SyntheticMicrophone(), direction="sendrecv")

        @self.pc.on("track")
        def on_track(track) -> None:
            self.tasks.append(asyncio.create_task(self._drain(track)))

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    @staticmethod
    async def _drain(track) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pc.close()


class FakeMatchmaker(matchmaker_pb2_grpc.MatchmakerServicer):
    """Just enough of the protocol: every FindPartner/Next is matched with the next partner tag."""

    def __init__(
        self,
        *,
        partner_tags=(1001, 1002),
        bridge=True,
        end_ticket=False,
        reject_hello=False,
        match=True,
        partner_leaves=False,
        switch_s=0.02,
    ) -> None:
        self.match = match
        self.partner_leaves = partner_leaves
        self.switch_s = switch_s  # from a FindPartner/Next to the bridge and Matched
        self.partner_tags = list(partner_tags)
        self.bridge = bridge
        self.end_ticket = end_ticket
        self.reject_hello = reject_hello
        self.received: list[matchmaker_pb2.ClientMessage] = []
        self.metadata: list[dict[str, str]] = []
        self.sessions_closed = asyncio.Event()
        self.offers = 0
        self.offer_sdp = ""

    async def Session(self, request_iterator, context):
        self.metadata.append(dict(context.invocation_metadata()))
        edge = FakeEdge()
        calls = 0
        current = None
        try:
            async for message in request_iterator:
                self.received.append(message)
                kind = message.WhichOneof("msg")
                if kind == "hello":
                    if self.reject_hello:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id is not valid")
                    yield server(
                        edge_assigned=matchmaker_pb2.EdgeAssigned(
                            session_id="s1",
                            edge=common_pb2.EdgeRef(edge_id="fra-1", region="Frankfurt"),
                            reason="test",
                            edge_assigned=now_ms(),
                        )
                    )
                elif kind == "offer":
                    self.offers += 1
                    self.offer_sdp = message.offer.sdp
                    sdp = await edge.accept(message.offer.sdp)
                    yield server(answer=matchmaker_pb2.LegAnswer(leg_id="leg-1", sdp=sdp))
                elif kind in ("find_partner", "next"):
                    if current is not None:
                        edge.video.unbridge()
                        yield server(call_ended=matchmaker_pb2.CallEnded(call_id=current, reason="next"))
                    queued = now_ms()
                    yield server(queued=matchmaker_pb2.Queued(ticket_id=f"t{calls}", queued=queued))
                    if not self.match:
                        continue
                    if self.end_ticket:
                        yield server(call_ended=matchmaker_pb2.CallEnded(reason="ticket expired"))
                        continue
                    await asyncio.sleep(self.switch_s)
                    matched = now_ms()
                    calls += 1
                    current = f"call-{calls}"
                    leaves = self.partner_leaves and calls == 1
                    if self.bridge and not leaves:
                        edge.video.bridge(self.partner_tags[calls - 1])
                    yield server(
                        matched=matchmaker_pb2.Matched(
                            call_id=current,
                            partner_display_name=f"partner{calls}",
                            partner_region="Singapore",
                            route=["fra-1", "sin-1"],
                            route_rtt_ms=150.0,
                            stages=common_pb2.StageTimes(
                                queued=queued, matched=matched, route_picked=matched, bridged=now_ms()
                            ),
                        )
                    )
                    if leaves:
                        yield server(call_ended=matchmaker_pb2.CallEnded(call_id=current, reason="partner_left"))
                        current = None
                elif kind == "leave":
                    return
        finally:
            await edge.close()
            self.sessions_closed.set()


@pytest.fixture
async def fake():
    servers = []

    async def start(**kwargs) -> tuple[FakeMatchmaker, str]:
        servicer = FakeMatchmaker(**kwargs)
        srv = grpc.aio.server()
        matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, srv)
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        servers.append(srv)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for srv in servers:
        await srv.stop(grace=None)


def client_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("duet-client")]


async def test_connect_find_next_leave(fake) -> None:
    servicer, address = await fake()
    async with synthetic_client(address, "u1", "User One", tag=42, client_ip="203.0.113.9") as client:
        pc = client.peer_connection
        assert client.edge.edge_id == "fra-1" and client.leg_id == "leg-1"
        first = await client.find_partner()
        second = await client.next()
        assert client.peer_connection is pc and servicer.offers == 1  # the warm leg was reused

    assert servicer.metadata[0]["x-forwarded-for"] == "203.0.113.9"
    assert (first.call_id, first.partner_display_name, first.first_marker.tag) == ("call-1", "partner1", 1001)
    assert (second.call_id, second.partner_display_name, second.first_marker.tag) == ("call-2", "partner2", 1002)
    for result in (first, second):
        s = result.stages
        assert set(s) == set(STAGES)
        assert 0 < s["session_open"] <= s["edge_assigned"] <= s["leg_connected"] <= s["queued"]
        assert s["queued"] <= s["matched"] <= s["bridged"] <= s["first_frame"]
        assert result.connect_ms == pytest.approx(s["first_frame"] - s["matched"])
        assert result.total_ms == pytest.approx(s["first_frame"] - s["queued"])
        assert 0 < result.connect_ms < 5000 and result.frames_decoded >= 1
        assert result.route == ["fra-1", "sin-1"] and result.partner_region == "Singapore"
    assert first.stages["session_open"] == second.stages["session_open"]

    kinds = [m.WhichOneof("msg") for m in servicer.received]
    assert kinds == ["hello", "offer", "find_partner", "connect_report", "next", "connect_report", "leave"]
    hello, _, find, report1, _, report2, _ = servicer.received
    assert hello.hello.user_id == "u1" and hello.hello.session_open == first.stages["session_open"]
    assert find.find_partner.leg_connected == first.stages["leg_connected"]
    assert report1.connect_report.call_id == "call-1" and report1.connect_report.connected
    assert report1.connect_report.stages.first_frame == first.stages["first_frame"]
    assert report1.connect_report.stages.queued == 0.0  # the server's own value stands
    assert report2.connect_report.call_id == "call-2"
    await asyncio.wait_for(servicer.sessions_closed.wait(), 5)
    assert client_tasks() == []


async def test_call_ended_while_queued_is_an_error(fake) -> None:
    _, address = await fake(end_ticket=True)
    async with synthetic_client(address, "u2", "User Two", tag=43) as client:
        with pytest.raises(DuetClientError, match="ended while waiting for a match: ticket expired"):
            await client.find_partner()
    assert client_tasks() == []


async def test_no_partner_frame_times_out_and_reports_give_up(fake) -> None:
    servicer, address = await fake(bridge=False)
    async with synthetic_client(address, "u3", "User Three", tag=44, frame_timeout=0.5) as client:
        with pytest.raises(DuetClientError, match=r"timed out after 0\.5 s waiting for the first frame of partner1"):
            await client.find_partner()
    reports = [m.connect_report for m in servicer.received if m.WhichOneof("msg") == "connect_report"]
    assert len(reports) == 1 and reports[0].call_id == "call-1" and not reports[0].connected
    assert client_tasks() == []


async def test_rejected_session_raises_with_the_grpc_status(fake) -> None:
    _, address = await fake(reject_hello=True)
    client = synthetic_client(address, "bad user", "x", tag=45)
    with pytest.raises(DuetClientError) as info:
        await client.connect()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "INVALID_ARGUMENT: user_id is not valid" in str(info.value)
    assert client_tasks() == []
    await client.leave()  # harmless after a failed connect


async def test_unreachable_matchmaker_raises(fake) -> None:
    client = synthetic_client("127.0.0.1:1", "u4", "x", tag=46, rpc_timeout=5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(DuetClientError) as info:
        await client.connect()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    # One more try on the only address, not a reconnect's whole backoff (~13 s): a wrong address fails fast.
    assert asyncio.get_running_loop().time() - started < 5
    assert client_tasks() == []


async def test_leave_wakes_a_pending_find_partner(fake) -> None:
    _, address = await fake(match=False)
    client = synthetic_client(address, "u5", "x", tag=47, match_timeout=None)
    await client.connect()
    pending = asyncio.create_task(client.find_partner())
    await asyncio.sleep(0.2)
    assert not pending.done()
    await client.leave()
    with pytest.raises(DuetClientError, match="the client left"):
        await asyncio.wait_for(pending, 2)
    assert client_tasks() == []


async def test_next_after_the_partner_left_enters_the_pool_again(fake) -> None:
    servicer, address = await fake(partner_leaves=True)
    async with synthetic_client(address, "u6", "x", tag=48) as client:
        with pytest.raises(DuetClientError, match=r"call-1 ended while waiting for the first frame .*: partner_left"):
            await client.find_partner()
        result = await client.next()  # the call is over: FindPartner, not Next
    assert result.call_id == "call-2" and result.first_marker.tag == 1002
    kinds = [m.WhichOneof("msg") for m in servicer.received]
    assert kinds == ["hello", "offer", "find_partner", "find_partner", "connect_report", "leave"]


async def test_next_before_any_call_is_find_partner(fake) -> None:
    servicer, address = await fake()
    async with synthetic_client(address, "u7", "x", tag=49) as client:
        result = await client.next()
    assert result.first_marker.tag == 1001
    assert [m.WhichOneof("msg") for m in servicer.received][:3] == ["hello", "offer", "find_partner"]


# --- the caller's media ---------------------------------------------------------


def media_directions(sdp: str) -> dict[str, str]:
    """kind -> direction of each m-section of an SDP."""
    directions, kind = {}, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split()[0]
        elif kind and line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive"):
            directions[kind] = line[2:]
    return directions


async def test_any_tracks_or_none_and_the_default_rule_across_next(fake) -> None:
    # A real edge stops the previous partner's video before it bridges the next
    # and the matchmaker then sends Matched; the pause is long here so that a
    # busy test machine's decoder cannot lag behind it (AnyMediaRule's precision).
    servicer, address = await fake(switch_s=0.2)
    microphone = SyntheticMicrophone()
    rule = ReadingRule()  # the default rule, telling the test whose picture it chose
    async with DuetClient(address, "u8", "x", audio=microphone, first_frame_rule=rule) as client:
        first = await client.find_partner()
        second = await client.next()
    # No video track: the leg still receives video (edges need a video section).
    assert media_directions(servicer.offer_sdp) == {"video": "recvonly", "audio": "sendrecv"}
    assert first.first_marker.tag == 1001
    assert second.first_marker.tag == 1002  # not the first partner's held last frame
    assert microphone.readyState == "ended"  # leave() stops the tracks it was given
    assert client_tasks() == []


def test_a_track_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="video= takes a video track, not audio"):
        DuetClient("127.0.0.1:1", "u9", "x", video=SyntheticMicrophone())


async def test_inbox_turns_a_closed_ticket_and_a_refusal_into_errors() -> None:
    inbox = SessionInbox()
    inbox.put(server(heartbeat_ack=matchmaker_pb2.HeartbeatAck(server_time=1.0)))  # skipped quietly
    inbox.put(server(ticket_closed=matchmaker_pb2.TicketClosed(ticket_id="t1", reason="expired: no partner found")))
    with pytest.raises(DuetClientError, match="waiting for a match: expired: no partner found") as info:
        await inbox.expect(("queued", "matched"), timeout=1, waiting_for="a match")
    assert info.value.reason == "expired: no partner found"
    inbox.put(
        server(
            error=matchmaker_pb2.Error(
                code="RESOURCE_EXHAUSTED", message="slow down: 20 requests in 10 s; try again in 1.0 s", request="next"
            )
        )
    )
    with pytest.raises(DuetClientError, match=r"next was refused \(RESOURCE_EXHAUSTED\): slow down") as info:
        await inbox.expect(("queued", "matched"), timeout=1, waiting_for="a match")
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_preferences_go_with_find_partner_and_next(fake) -> None:
    servicer, address = await fake()
    prefs = MatchPreferences(languages=("en", "pt"), interests=("music",), scope="near")
    async with synthetic_client(address, "u1", "User One", tag=42, preferences=prefs) as client:
        await client.find_partner()
        await client.next()
    sent = [m for m in servicer.received if m.WhichOneof("msg") in ("find_partner", "next")]
    assert [m.WhichOneof("msg") for m in sent] == ["find_partner", "next"]
    for m in sent:
        p = m.find_partner.preferences if m.HasField("find_partner") else m.next.preferences
        assert (list(p.languages), list(p.interests), p.scope) == (["en", "pt"], ["music"], matchmaker_pb2.SCOPE_NEAR)
    with pytest.raises(ValueError, match="scope must be one of anywhere, near"):
        MatchPreferences(scope="mars")


async def test_the_token_goes_with_the_session_and_a_source_is_asked_per_connect(fake) -> None:
    servicer, address = await fake()
    asked: list[str] = []

    async def source() -> str:
        asked.append(f"minted-{len(asked) + 1}")
        return asked[-1]

    async with synthetic_client(address, "u10", "x", tag=47, token="given.token.value"):
        pass
    for _ in range(2):
        async with synthetic_client(address, "u11", "x", tag=48, token=source):
            pass
    assert [m.get("authorization") for m in servicer.metadata] == [
        "Bearer given.token.value",
        "Bearer minted-1",
        "Bearer minted-2",
    ]
    assert asked == ["minted-1", "minted-2"]
