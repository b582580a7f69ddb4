"""Friends across the whole local cluster: PostgreSQL, routing, matchmaker and edge processes over
gRPC/TCP and UDP, and real aiortc clients through the SDK. Strangers become friends after a call,
one calls the other, the accepted call connects with video on the warm legs and is recorded;
declined, offline and bad requests get the right answer and change nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
import pytest_asyncio

from duet.services.auth.bearer import bearer_metadata
from duet.services.client import DuetClient, DuetClientError, FriendsDirectory
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
Code = grpc.StatusCode


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-friends")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


def client(cluster: ClusterInfo, user: str, name: str, tag: int, region: str) -> DuetClient:
    return synthetic_client(
        cluster.matchmaker, user, name, tag=tag, client_ip=DEMO_CLIENT_IPS[region], token=cluster.user_tokens(user)
    )


async def get_call(cluster: ClusterInfo, call_id: str, user: str) -> matchmaker_pb2.CallRecord:
    async with grpc.aio.insecure_channel(cluster.matchmaker) as ch:
        return await matchmaker_pb2_grpc.MatchmakerStub(ch).GetCall(
            matchmaker_pb2.GetCallRequest(call_id=call_id), metadata=bearer_metadata(cluster.user_token(user))
        )


async def hang_up(me: DuetClient, partner: DuetClient) -> str:
    """``me`` hangs up; what ``partner`` was told (waiting before the hang-up, so the end cannot slip past)."""
    told = asyncio.create_task(partner.wait_call_ended(5))
    await asyncio.sleep(0)  # the wait is armed
    await me.hang_up()
    return await told


async def test_strangers_become_friends_and_a_friend_call_connects_with_video(
    cluster: ClusterInfo, database_url: str
) -> None:
    ana = client(cluster, "fr-ana", "Ana", 3131, "Frankfurt")
    ben = client(cluster, "fr-ben", "Ben", 4141, "Virginia")
    try:
        await asyncio.gather(ana.connect(), ben.connect())
        first, _ = await asyncio.gather(ana.find_partner(), ben.find_partner())
        assert await ana.add_friend() is False  # one side alone is not a friendship
        assert await ana.friends() == []
        assert await ben.add_friend() is True
        added_to_ana, added_to_ben = await asyncio.gather(ana.wait_friend_added(5), ben.wait_friend_added(5))
        assert (added_to_ana.user_id, added_to_ana.display_name) == ("fr-ben", "Ben")
        assert added_to_ben.user_id == "fr-ana"
        (friend,) = await ana.friends()
        assert (friend.user_id, friend.online, friend.busy) == ("fr-ben", True, True)  # still in the first call

        assert await hang_up(ana, ben) == "partner_hung_up"
        (friend,) = await ana.friends()
        assert (friend.online, friend.busy) == (True, False)
    finally:
        await asyncio.gather(ana.leave(), ben.leave())

    # Later, in new sessions (new legs), ana calls ben. (The synthetic camera's first-frame rule
    # tells partners apart by their tag, so the same partner right after a call needs a fresh leg.)
    async with DuetClient(cluster.matchmaker, "fr-ana", "Ana", token=cluster.user_tokens("fr-ana")) as offline_check:
        (friend,) = await offline_check.friends()
        assert (friend.user_id, friend.online) == ("fr-ben", False)
    ana = client(cluster, "fr-ana", "Ana", 3131, "Frankfurt")
    ben = client(cluster, "fr-ben", "Ben", 4141, "Virginia")
    try:
        await asyncio.gather(ana.connect(), ben.connect())

        async def ben_answers() -> object:
            incoming = await ben.wait_incoming_call(10)
            assert incoming.caller_user_id == "fr-ana" and incoming.caller.display_name == "Ana"
            assert incoming.caller.region == "Frankfurt"
            return await ben.answer(incoming.request_id)

        ra, rb = await asyncio.gather(ana.call_friend("fr-ben"), ben_answers())
        assert ra.call_id == rb.call_id != first.call_id  # type: ignore[attr-defined]
        # Each decoded the other's own picture over the same warm legs, across the backbone.
        assert ra.first_marker is not None and ra.first_marker.tag == 4141
        assert rb.first_marker is not None and rb.first_marker.tag == 3131  # type: ignore[attr-defined]
        assert ra.route == ["fra-1", "vir-1"] and ra.connect_ms is not None and ra.connect_ms > 0
        assert ana.last_match is not None and ana.last_match.friend_call
        print("friend call connect_ms (fra-1 <-> vir-1):", round(ra.connect_ms, 1), round(rb.connect_ms or 0, 1))  # type: ignore[attr-defined]

        assert (await get_call(cluster, ra.call_id, "fr-ben")).kind == "friend"

        assert await hang_up(ben, ana) == "partner_hung_up"
        record = await get_call(cluster, ra.call_id, "fr-ana")
        assert (record.kind, record.state, record.end_reason) == ("friend", "ended", "hung_up")
        # Every stage of both sides (the edges' first packets are kept when the bridge comes down).
        for side in (record.a, record.b):
            st = side.stages
            assert st.queued <= st.matched <= st.route_picked <= st.bridged <= st.first_frame, st
            assert st.first_packet_at_edge > 0 and st.leg_connected > 0 and side.connect_ms > 0
        assert record.duration_ms > 0 and record.ended_at - record.created_at == pytest.approx(
            record.duration_ms, abs=2.0
        )
        assert (await get_call(cluster, first.call_id, "fr-ana")).kind == "match"

        # Declined: the caller hears why; nothing is connected.
        calling = asyncio.create_task(ana.call_friend("fr-ben"))
        incoming = await ben.wait_incoming_call(10)
        assert await ben.answer(incoming.request_id, accept=False) is None
        with pytest.raises(DuetClientError) as declined:
            await calling
        assert declined.value.reason == "declined" and not ana.in_call and not ben.in_call
    finally:
        await asyncio.gather(ana.leave(), ben.leave())

    # The friendship is in PostgreSQL, one row for the pair.
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT user_lo, user_hi FROM friends WHERE user_lo = 'fr-ana'")
        pending = await conn.fetchval("SELECT count(*) FROM friend_requests WHERE requester IN ('fr-ana', 'fr-ben')")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [("fr-ana", "fr-ben")] and pending == 0


async def test_offline_unknown_self_and_strangers_are_refused_and_nothing_changes(cluster: ClusterInfo) -> None:
    cleo = client(cluster, "fr-cleo", "Cleo", 5151, "Frankfurt")
    dara = client(cluster, "fr-dara", "Dara", 6161, "Singapore")
    eve = client(cluster, "fr-eve", "Eve", 7171, "Virginia")
    try:
        await asyncio.gather(cleo.connect(), dara.connect(), eve.connect())
        await asyncio.gather(cleo.find_partner(), dara.find_partner())
        assert not await cleo.add_friend() and await dara.add_friend()
        assert await hang_up(cleo, dara) == "partner_hung_up"
        await dara.leave()

        cases = [
            ("fr-dara", Code.FAILED_PRECONDITION, "not online"),
            ("fr-nobody", Code.NOT_FOUND, "no user"),
            ("fr-cleo", Code.INVALID_ARGUMENT, "your own"),
            ("fr-eve", Code.PERMISSION_DENIED, "not your friend"),
            ("", Code.INVALID_ARGUMENT, "required"),
        ]
        for user_id, code, words in cases:
            with pytest.raises(DuetClientError) as refused:
                await cleo.call_friend(user_id)
            assert refused.value.code == code and words in str(refused.value), (user_id, refused.value)
        # The session went on: cleo still meets a stranger on the same warm leg.
        result, _ = await asyncio.gather(cleo.find_partner(), eve.find_partner())
        assert result.partner_display_name == "Eve"

        async with FriendsDirectory(cluster.matchmaker, cluster.user_token("fr-cleo")) as mine:
            with pytest.raises(DuetClientError) as refused:
                await mine.remove("fr-eve")
            assert refused.value.code == Code.NOT_FOUND
            with pytest.raises(DuetClientError) as refused:
                await mine.remove("fr-cleo")
            assert refused.value.code == Code.INVALID_ARGUMENT
            assert [(f.user_id, f.online) for f in await mine.list()] == [("fr-dara", False)]
            await mine.remove("fr-dara")
            assert await mine.list() == []
        async with FriendsDirectory(cluster.matchmaker, cluster.user_token("fr-dara")) as theirs:
            assert await theirs.list() == []
    finally:
        await asyncio.gather(cleo.leave(), dara.leave(), eve.leave())


async def duet(*args: str) -> tuple[int, str, str]:
    """Run the duet command as its own process (without blocking the loop): exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "duet.services.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_cli_lists_friends_and_places_and_answers_a_friend_call(cluster: ClusterInfo) -> None:
    fay = client(cluster, "fr-fay", "Fay", 8181, "Frankfurt")
    gus = client(cluster, "fr-gus", "Gus", 9191, "Virginia")
    try:
        await asyncio.gather(fay.connect(), gus.connect())
        await asyncio.gather(fay.find_partner(), gus.find_partner())
        await fay.add_friend()
        await gus.add_friend()
    finally:
        await asyncio.gather(fay.leave(), gus.leave())
    fay_token, gus_token = cluster.user_token("fr-fay"), cluster.user_token("fr-gus")
    mm = ["--matchmaker", cluster.matchmaker]

    code, out, err = await duet("friends", *mm, "--token", fay_token, "--json", "list")
    assert code == 0, err
    assert [(f["user_id"], f["online"]) for f in json.loads(out)] == [("fr-gus", False)]

    ip = ["--client-ip", DEMO_CLIENT_IPS["Virginia"]]
    answering = asyncio.create_task(duet("call", *mm, *ip, "--token", gus_token, "--answer", "--timeout", "30"))
    for _ in range(100):  # until gus's session is up and waiting
        async with FriendsDirectory(cluster.matchmaker, fay_token) as mine:
            if (await mine.list())[0].online:
                break
        await asyncio.sleep(0.2)
    code, out, err = await duet("call", *mm, "--token", fay_token, "--friend", "fr-gus", "--hold", "1")
    assert code == 0, err
    assert "ringing fr-gus" in out and "call " in out and "connect_ms" in out
    code, answered, err = await answering
    assert code == 0, err
    assert "fr-fay (fr-fay) is calling; accepting" in answered  # no --name: the user id is shown

    code, out, err = await duet("call", *mm, "--token", fay_token, "--friend", "fr-gus", "--timeout", "10")
    assert code == 1 and "not online" in err, (out, err)
    code, out, err = await duet("friends", *mm, "--token", fay_token, "remove", "fr-nobody")
    assert code == 1 and "NOT_FOUND" in err and "not one of your friends" in err, err
    code, out, err = await duet("friends", *mm, "--token", fay_token, "remove", "fr-gus")
    assert code == 0 and "no longer your friend" in out
