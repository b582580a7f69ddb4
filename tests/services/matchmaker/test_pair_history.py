"""The pair history's memory of meetings: noted as they happen, and merged with what the store
remembers when a user's session opens (meetings on another replica, or before a restart)."""

from __future__ import annotations

from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.store.meetings import PastMeeting


def test_the_last_partners_are_distinct_and_the_oldest_goes_first() -> None:
    history = InMemoryPairHistory(recent_partners=2)
    history.note_met("ana", "ben")
    history.note_met("ana", "cleo")
    history.note_met("ana", "ben")  # ben again: the latest, and still one place
    assert history.recent_of("ana") == {"ben", "cleo"}
    history.note_met("ana", "dara")
    assert history.recent_of("ana") == {"ben", "dara"}  # cleo was the oldest
    assert history.met_recently("cleo", "ana")  # ana is among cleo's own last partners
    assert not history.met_recently("dara", "cleo")


def test_loaded_meetings_keep_a_pair_apart_both_ways() -> None:
    history = InMemoryPairHistory(recent_partners=3)
    history.load_meetings("ana", [PastMeeting("ben", 5.0), PastMeeting("cleo", 50.0)])
    assert history.met_recently("ana", "ben") and history.met_recently("cleo", "ana")
    assert not history.met_recently("ana", "dara")


def test_loaded_meetings_merge_with_those_seen_here_by_their_time() -> None:
    now = [1000.0]
    history = InMemoryPairHistory(recent_partners=2, clock=lambda: now[0])
    history.note_met("ana", "ben")  # at 1000
    now[0] = 1100.0
    # The store knows of two: cleo 10 s ago (newer than ben) and dara 500 s ago (older than ben).
    history.load_meetings("ana", [PastMeeting("dara", 500.0), PastMeeting("cleo", 10.0)])
    assert history.recent_of("ana") == {"ben", "cleo"}
    # ben met again on another replica, as the store says: still one place, and now the newest.
    history.load_meetings("ana", [PastMeeting("ben", 1.0)])
    history.note_met("ana", "eve")
    assert history.recent_of("ana") == {"ben", "eve"}


def test_loaded_meetings_count_toward_the_window_by_their_age() -> None:
    now = [1000.0]
    history = InMemoryPairHistory(recent_partners=0, rematch_window_s=60, clock=lambda: now[0])
    history.load_meetings("ana", [PastMeeting("ben", 30.0), PastMeeting("cleo", 90.0)])
    assert history.met_recently("ben", "ana")
    assert not history.met_recently("ana", "cleo")  # outside the window already
    now[0] += 31
    assert not history.met_recently("ana", "ben")  # 61 s ago now
    assert history.recent_of("ana") == frozenset()  # no last-N list kept when N is 0


def test_an_older_loaded_meeting_does_not_shorten_a_window_noted_here() -> None:
    now = [1000.0]
    history = InMemoryPairHistory(recent_partners=0, rematch_window_s=60, clock=lambda: now[0])
    history.note_met("ana", "ben")
    history.load_meetings("ana", [PastMeeting("ben", 50.0)])
    now[0] += 20
    assert history.met_recently("ana", "ben")  # 20 s since the meeting seen here, not 70
