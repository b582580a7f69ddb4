"""The core's relaxation timer under a burst: many tickets due at once must not hold the event loop,
and each is still looked at again (and matched when its criteria have relaxed enough)."""

from __future__ import annotations

import asyncio

from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.events import Matched, SessionClosed, SessionEvent
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.ports import EdgeInfo, EdgeState
from duet.services.matchmaker.preferences import Preferences
from duet.services.matchmaker.session_state import ClientSession

EDGES = [EdgeInfo("fra-1", 1, "Frankfurt", "127.0.0.1:1", "127.0.0.1:11", "127.0.0.1", EdgeState.ACTIVE)]
# Men who want women and name an interest: they never fit each other, and their interests relax at 10 s.
WAITING = Preferences(gender="male", want_genders=frozenset({"female"}), interests=frozenset({"chess"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def waiting_user(mm: Matchmaker, user: str, prefs: Preferences) -> asyncio.Queue[SessionEvent | SessionClosed]:
    outbox: asyncio.Queue[SessionEvent | SessionClosed] = asyncio.Queue()
    session: ClientSession = await mm.open_session(user, user, "1.1.1.1", outbox)
    await mm.attach_leg(session, "v=0 offer")
    await mm.find_partner(session, prefs)
    return outbox


def drain(outbox: asyncio.Queue[SessionEvent | SessionClosed]) -> list[SessionEvent | SessionClosed]:
    out = []
    while not outbox.empty():
        out.append(outbox.get_nowait())
    return out


async def test_a_burst_of_due_relaxations_lets_other_work_run_between_tickets() -> None:
    clock = Clock()
    mm = Matchmaker(InMemoryStore(), FakeRouting(EDGES), FakeEdges(), clock=clock)
    for i in range(40):
        await waiting_user(mm, f"m{i}", WAITING)
    clock.now += 11  # every ticket's interests relaxed a second ago
    burst = asyncio.create_task(mm.run_due())
    turns = 0
    while not burst.done():
        turns += 1
        await asyncio.sleep(0)
    await burst
    # Each of the 40 re-searches gave the loop a turn (back to back, this loop would have run once).
    assert turns >= 40
    assert len(mm.pool) == 40  # looked at again, nobody fits: all still waiting
    await mm.stop()


async def test_a_ticket_looked_at_again_in_a_burst_is_matched_once_relaxed() -> None:
    clock = Clock()
    mm = Matchmaker(InMemoryStore(), FakeRouting(EDGES), FakeEdges(), clock=clock)
    outboxes = [await waiting_user(mm, f"m{i}", WAITING) for i in range(10)]
    # A woman with another interest: no man may meet her until his interests relax (hers relax too).
    woman = await waiting_user(
        mm, "w", Preferences(gender="female", want_genders=frozenset({"male"}), interests=frozenset({"film"}))
    )
    assert len(mm.pool) == 11
    clock.now += 11
    await mm.run_due()
    events = [e for q in [*outboxes, woman] for e in drain(q) if isinstance(e, Matched)]
    assert len(events) == 2 and len(mm.pool) == 9  # one pair, made by the timer
    await mm.stop()
