"""The core's safety and ticket lifetime: blocks that outlive the process (PostgreSQL), the
review hold, the relaxation timer, preferences kept across requests."""

from __future__ import annotations

import asyncio

import pytest

from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.errors import HeldForReview, NotFound
from duet.services.matchmaker.events import Blocked, CallEnded, Matched, Queued, Reported, TicketClosed
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemorySafetyStore, InMemoryStore
from duet.services.matchmaker.preferences import Preferences, Scope
from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.store.postgres import Store
from tests.services.matchmaker.test_core import EDGES, join


def make(store: InMemoryStore | Store, safety: object = None, **config: object) -> Matchmaker:
    return Matchmaker(
        store,
        FakeRouting(EDGES, ingress_by_prefix={"2.": "vir-1"}),
        FakeEdges(),
        config=MatchConfig(recent_partners=0, **config),  # type: ignore[arg-type]
        safety=safety,  # type: ignore[arg-type]
    )


async def test_a_block_stored_in_postgresql_keeps_the_pair_apart_after_a_restart(store: Store) -> None:
    first = make(store, store)
    ana, ben = await join(first, "ana"), await join(first, "ben")
    await first.find_partner(ana.session)
    await first.find_partner(ben.session)
    call_id = ben.last(Matched).call_id
    await first.block(ben.session, call_id)
    assert [type(e) for e in ben.items()][-2:] == [CallEnded, Blocked]
    await first.stop()

    second = make(store, store)  # a new process: it knows only what PostgreSQL kept
    ana, ben = await join(second, "ana"), await join(second, "ben")
    await second.find_partner(ana.session)
    await second.find_partner(ben.session)
    assert Matched not in ana.drain() + ben.drain() and len(second.pool) == 2
    cleo = await join(second, "cleo")
    await second.find_partner(cleo.session)
    assert cleo.last(Matched).partner_display_name == "Ana"
    await second.stop()


async def test_reports_past_the_threshold_hold_a_waiting_user_for_review() -> None:
    mm = make(InMemoryStore(), InMemorySafetyStore(), review_threshold=2)
    dara, ana, ben = await join(mm, "dara"), await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(dara.session)
    await mm.find_partner(ana.session)
    with_ana = ana.last(Matched).call_id
    await mm.find_partner(ben.session)  # waits: dara is in a call
    await mm.next(dara.session)  # dara leaves ana for ben
    calls = [(ana, with_ana), (ben, ben.last(Matched).call_id)]
    await mm.report(calls[0][0].session, calls[0][1], "rude")
    assert isinstance(calls[0][0].items()[-1], Reported)
    await mm.next(dara.session)  # one report: still matched (later than others), here waiting
    assert dara.session.ticket is not None
    await mm.report(calls[1][0].session, calls[1][1], "spam")
    closed = dara.last(TicketClosed)
    assert closed.reason.startswith("held for review: 2 people reported you")
    assert dara.session.ticket is None and len(mm.pool) == 0
    with pytest.raises(HeldForReview, match="2 people reported you"):
        await mm.find_partner(dara.session)
    with pytest.raises(NotFound):
        await mm.report(dara.session, "no-such-call", "")
    await mm.stop()


async def test_the_timer_pairs_two_waiting_users_once_their_interests_relax() -> None:
    mm = make(InMemoryStore(), InMemorySafetyStore(), relax=RelaxSchedule(interests_optional_after_s=0.2))
    mm.start()
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(ana.session, Preferences(interests=frozenset({"music"})))
    await mm.find_partner(ben.session, Preferences(interests=frozenset({"film"})))
    assert Matched not in ana.drain() + ben.drain()  # interests still required
    matched = await asyncio.wait_for(ben.outbox.get(), 5)  # the timer looks again at 0.2 s
    assert isinstance(matched, Matched) and matched.partner is not None
    assert matched.partner.display_name == "Ana" and matched.partner.shared_interests == ()
    await mm.stop()


async def test_preferences_are_kept_until_changed_and_next_while_waiting_changes_nothing() -> None:
    mm = make(InMemoryStore(), InMemorySafetyStore())
    ana = await join(mm, "ana")
    near = Preferences(languages=frozenset({"pt"}), scope=Scope.NEAR)
    await mm.find_partner(ana.session, near)
    first = ana.last(Queued).ticket_id
    await mm.next(ana.session, Preferences())  # waiting already: no new ticket, the preferences stay
    assert ana.session.preferences == near and ana.session.ticket is not None
    assert ana.session.ticket.ticket_id == first
    await mm.cancel(ana.session)
    await mm.find_partner(ana.session)  # none given: the last ones
    assert ana.session.ticket is not None and ana.session.ticket.preferences == near
    await mm.stop()
