"""The keyframe cache: unit tests and a property over random packet sequences."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from duet.edge.keyframe_cache import KeyframeCache

KEY, INTER = 0x10, 0x00  # first payload byte: a keyframe start, anything else


def packet(seq: int, ts: int, *, key: bool = False, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, seq, ts, 7) + bytes([KEY if key else INTER, 1])


def cache(max_packets: int = 256) -> KeyframeCache:
    return KeyframeCache(lambda p: p[12] == KEY, max_packets=max_packets)


def test_only_a_complete_keyframe_is_replayed_and_the_latest_wins() -> None:
    c = cache()
    c.add(packet(1, 100, marker=True))
    assert c.replay() == []  # inter frames alone are useless to a new partner
    c.add(packet(2, 200, key=True))
    assert c.replay() == []  # the keyframe's last packet (marker) has not come yet
    c.add(packet(3, 200, marker=True))
    c.add(packet(4, 300, marker=True))
    assert c.replay() == [packet(2, 200, key=True), packet(3, 200, marker=True)]
    c.add(packet(5, 400, key=True))
    assert c.replay() == [packet(2, 200, key=True), packet(3, 200, marker=True)]  # the new one is not complete
    c.add(packet(6, 400, marker=True))
    assert c.replay() == [packet(5, 400, key=True), packet(6, 400, marker=True)]
    assert c.keyframes_seen == 2


def test_a_keyframe_cut_short_or_too_large_replaces_nothing() -> None:
    c = cache(max_packets=2)
    c.add(packet(1, 100, key=True, marker=True))
    c.add(packet(2, 200, key=True))
    c.add(packet(3, 300, marker=True))  # another frame before the keyframe's end
    c.add(packet(4, 400, key=True))
    c.add(packet(5, 400))
    c.add(packet(6, 400, marker=True))  # a third packet: over the limit
    assert c.replay() == [packet(1, 100, key=True, marker=True)]


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 2)), max_size=80), st.integers(1, 6))
def test_a_replay_is_always_one_whole_keyframe_as_sent(steps: list[tuple[bool, bool, int]], max_packets: int) -> None:
    c = cache(max_packets)
    ts, sent = 1000, []
    for seq, (key, marker, step) in enumerate(steps):
        ts += step
        p = packet(seq, ts, key=key, marker=marker)
        c.add(p)
        sent.append(p)
        replay = c.replay()
        if not replay:
            continue
        start = sent.index(replay[0])  # packets are unique (their sequence numbers)
        assert replay == sent[start : start + len(replay)]  # consecutive, in arrival order
        assert replay[0][12] == KEY and replay[-1][1] & 0x80  # from the keyframe's start to its marker
        assert len({p[4:8] for p in replay}) == 1 and len(replay) <= max_packets  # one frame, bounded
        assert not any(p[1] & 0x80 for p in replay[:-1])
