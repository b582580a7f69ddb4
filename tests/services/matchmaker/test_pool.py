"""The pairing rule: unit tests and hypothesis properties over random arrivals."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from duet.services.matchmaker.media_rule import VideoCodecs, can_exchange_video
from duet.services.matchmaker.pool import Ticket, WaitingPool, compatible

BROWSER = VideoCodecs.of("VP8", ["VP8", "H264/42e01f"])
H264_ONLY = VideoCodecs.of("H264/42e01f", ["H264/42e01f"])


def ticket(n: int, user: str, avoid: frozenset[str] = frozenset(), video: VideoCodecs = BROWSER) -> Ticket:
    return Ticket(
        ticket_id=f"t{n}",
        user_id=user,
        session_id=f"s{n}",
        edge_id="fra-1",
        queued_at=float(n),
        video=video,
        avoid=avoid,
    )


def test_first_ticket_waits_second_is_paired_at_once() -> None:
    pool = WaitingPool()
    assert pool.offer(ticket(1, "ana")) is None
    assert len(pool) == 1
    pair = pool.offer(ticket(2, "ben"))
    assert pair is not None
    assert (pair[0].user_id, pair[1].user_id) == ("ana", "ben")
    assert len(pool) == 0


def test_oldest_compatible_waiting_ticket_wins() -> None:
    pool = WaitingPool()
    pool.offer(ticket(1, "ana", avoid=frozenset({"dara"})))
    assert pool.offer(ticket(2, "ben", avoid=frozenset({"ana"}))) is None
    assert pool.offer(ticket(3, "cleo", avoid=frozenset({"ana", "ben"}))) is None
    pair = pool.offer(ticket(4, "dara"))
    assert pair is not None and pair[0].user_id == "ben"  # ana is older but avoids dara; ben beats cleo
    assert [t.user_id for t in pool.waiting()] == ["ana", "cleo"]


def test_never_paired_with_yourself_and_new_ticket_replaces_old() -> None:
    pool = WaitingPool()
    pool.offer(ticket(1, "ana"))
    assert pool.offer(ticket(2, "ana")) is None
    assert [t.ticket_id for t in pool.waiting()] == ["t2"]


def test_recent_partner_is_avoided_both_ways() -> None:
    a = ticket(1, "ana", avoid=frozenset({"ben"}))
    b = ticket(2, "ben")
    assert not compatible(a, b) and not compatible(b, a)


def test_clients_that_cannot_exchange_video_are_never_paired() -> None:
    pool = WaitingPool()
    pool.offer(ticket(1, "ana", video=H264_ONLY))  # decodes only H.264; a browser here sends VP8
    assert pool.offer(ticket(2, "ben")) is None
    pair = pool.offer(ticket(3, "cleo", video=VideoCodecs.of("H264/42e01f", ["VP8", "H264/42e01f"])))
    assert pair is not None and pair[0].user_id == "ana"  # cleo sends H.264 and decodes VP8: fine with both
    assert [t.user_id for t in pool.waiting()] == ["ben"]


def test_remove_cancels_a_ticket() -> None:
    pool = WaitingPool()
    pool.offer(ticket(1, "ana"))
    assert pool.remove("t1") is not None
    assert pool.remove("t1") is None
    assert pool.offer(ticket(2, "ben")) is None


users = st.sampled_from(["u0", "u1", "u2", "u3", "u4", "u5"])
codec_names = st.sampled_from(["VP8", "H264/42e01f", "H264/42001f"])
video_codecs = st.builds(
    lambda send, more: VideoCodecs.of(send, {send} | more), codec_names, st.frozensets(codec_names, max_size=2)
)
events = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), users, st.frozensets(users, max_size=2), video_codecs),
        st.tuples(st.just("cancel"), users, st.just(frozenset()), st.just(BROWSER)),
    ),
    max_size=60,
)


@given(video_codecs, video_codecs)
def test_video_rule_is_symmetric_and_means_each_decodes_the_others_codec(a: VideoCodecs, b: VideoCodecs) -> None:
    assert can_exchange_video(a, b) == can_exchange_video(b, a)
    assert can_exchange_video(a, b) == (a.send in b.receive and b.send in a.receive)
    assert can_exchange_video(a, a)  # a client decodes what it sends


@settings(max_examples=300, deadline=None)
@given(events)
def test_pool_invariants(evts: list[tuple[str, str, frozenset[str], VideoCodecs]]) -> None:
    pool = WaitingPool()
    live: dict[str, Ticket] = {}  # user -> their waiting ticket (model)
    matched: set[str] = set()
    for n, (op, user, avoid, video) in enumerate(evts):
        if op == "cancel":
            if user in live:
                assert pool.remove(live.pop(user).ticket_id) is not None
            continue
        t = ticket(n, user, avoid, video)
        live.pop(user, None)
        expected = next((w for w in sorted(live.values(), key=lambda w: w.queued_at) if compatible(w, t)), None)
        pair = pool.offer(t)
        if expected is None:
            assert pair is None
            live[user] = t
        else:
            assert pair is not None
            older, newer = pair
            # oldest compatible waiting ticket, never yourself, never an avoided partner, video both ways
            assert older == expected and newer == t
            assert older.user_id != newer.user_id
            assert compatible(older, newer)
            assert older.video.send in newer.video.receive and newer.video.send in older.video.receive
            # neither ticket can be matched again
            assert older.ticket_id not in matched and newer.ticket_id not in matched
            matched |= {older.ticket_id, newer.ticket_id}
            del live[older.user_id]
        # one ticket per user, and the pool holds exactly the model's tickets
        waiting = pool.waiting()
        assert len({w.user_id for w in waiting}) == len(waiting)
        assert {w.ticket_id for w in waiting} == {w.ticket_id for w in live.values()}
        # nobody waiting could have been paired with anyone else waiting
        for i, x in enumerate(waiting):
            for y in waiting[i + 1 :]:
                assert not compatible(x, y)
