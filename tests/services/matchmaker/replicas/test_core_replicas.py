"""The core's side of replicas: shards of sessions, tickets restored on takeover and resumed by their
returning users, a shard given up, and a pair whose ticket was closed elsewhere. Two ``Matchmaker``s on
one store stand for two replicas; each test runs on the in-memory store and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.events import Matched, Queued, ShardMoved, TicketClosed
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.preferences import Scope, checked_preferences
from duet.services.matchmaker.replicas.shards import parse_shards
from duet.services.matchmaker.replicas.ticket_restore import preferences_from_json, preferences_json
from duet.services.store.postgres import Store
from tests.services.matchmaker.test_core import EDGES, Client, join

AnyStore = InMemoryStore | Store
SHARDS = parse_shards("emea=Frankfurt;amer=Virginia")


@pytest.fixture(params=["memory", "postgres"])
def match_store(request: pytest.FixtureRequest) -> AnyStore:
    return InMemoryStore() if request.param == "memory" else request.getfixturevalue("store")


def replica(store: AnyStore, now: list[float]) -> Matchmaker:
    routing = FakeRouting(EDGES, ingress_by_prefix={"2.": "vir-1"})
    return Matchmaker(store, routing, FakeEdges(), shards=SHARDS, clock=lambda: now[0])


def test_preferences_round_trip_through_json() -> None:
    p = checked_preferences(
        languages=["pt", "en"],
        interests=["Film", "música"],
        gender="female",
        want_genders=["male", "nonbinary"],
        age_band="25-34",
        want_age_bands=["18-24"],
        scope=Scope.NEAR,
    )
    assert preferences_from_json(preferences_json(p)) == p


async def test_sessions_know_their_shard(match_store: AnyStore) -> None:
    mm = replica(match_store, [1000.0])
    assert (await join(mm, "ana")).session.shard == "emea"
    assert (await join(mm, "ben", "2.2.2.2")).session.shard == "amer"


async def test_a_returning_user_resumes_their_ticket_with_its_age(match_store: AnyStore) -> None:
    now = [1000.0]
    dead = replica(match_store, now)
    prefs = checked_preferences(languages=["en"], interests=["chess"])
    ana = await join(dead, "ana")
    await dead.find_partner(ana.session, prefs)
    queued = ana.last(Queued)
    # The replica dies (its sessions vanish without closing anything); the survivor takes the shard over.
    now[0] += 20
    survivor = replica(match_store, now)
    assert await survivor.restore_shard("emea") == 1
    assert survivor.waiting_by_shard() == {"emea": 1, "amer": 0}
    assert survivor.pool.get(queued.ticket_id) is None  # not matchable until its user is back
    back = await join(survivor, "ana")
    await survivor.find_partner(back.session)  # no preferences stated again: the stored ones hold
    again = back.last(Queued)
    assert again.ticket_id == queued.ticket_id and again.queued_at == pytest.approx(queued.queued_at)
    assert back.session.preferences == prefs
    row = await match_store.get_ticket(queued.ticket_id)
    assert row is not None and row.session_id == back.session.session_id and row.closed_at is None
    # and it is matched like any other waiting ticket
    ben = await join(survivor, "ben")
    await survivor.find_partner(ben.session, checked_preferences(languages=["en"], interests=["chess"]))
    assert ben.last(Matched).partner_display_name == "Ana"
    assert (await match_store.get_ticket(queued.ticket_id)).outcome == "matched"  # type: ignore[union-attr]


async def test_a_restored_ticket_whose_user_does_not_return_expires(match_store: AnyStore) -> None:
    now = [1000.0]
    dead = replica(match_store, now)
    ana = await join(dead, "ana")
    await dead.find_partner(ana.session)
    ticket_id = ana.last(Queued).ticket_id
    survivor = replica(match_store, now)
    await survivor.restore_shard("emea")
    now[0] += survivor.config.ticket_ttl_s + 1
    await survivor.run_due()
    row = await match_store.get_ticket(ticket_id)
    assert row is not None and row.outcome == "expired"
    assert survivor.waiting_by_shard()["emea"] == 0


async def test_a_lost_shard_ends_its_sessions_and_leaves_their_tickets_open(match_store: AnyStore) -> None:
    mm = replica(match_store, [1000.0])
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    ticket_id = ana.last(Queued).ticket_id
    await mm.release_shard("emea", "moved")
    assert isinstance(ana.items()[-1], ShardMoved) and ana.session.closed
    assert not ben.session.closed  # the other shard's sessions go on
    assert [t.ticket_id for t in await match_store.open_tickets_in_shard("emea")] == [ticket_id]


async def test_a_pair_whose_ticket_was_closed_elsewhere_is_not_made(match_store: AnyStore) -> None:
    mm = replica(match_store, [1000.0])
    ana = await join(mm, "ana")
    await mm.find_partner(ana.session)
    ana_ticket = ana.last(Queued).ticket_id
    # Another replica paired (closed) ana's ticket a moment ago; this one has not heard.
    await match_store.close_ticket(ana_ticket, "matched")
    ben = await join(mm, "ben")
    await mm.find_partner(ben.session)
    await asyncio.sleep(0)
    ana_items = ana.items()
    assert not any(isinstance(i, Matched) for i in ana_items)
    assert any(isinstance(i, TicketClosed) and "closed elsewhere" in i.reason for i in ana_items)
    assert ana.session.ticket is None
    ben_items = ben.items()
    assert not any(isinstance(i, Matched) for i in ben_items)
    # ben waits on with his ticket, still open; ana is told hers is gone
    assert ben.session.ticket is not None
    ben_row = await match_store.get_ticket(ben.session.ticket.ticket_id)
    assert ben_row is not None and ben_row.closed_at is None
    assert mm.pool.get(ben.session.ticket.ticket_id) is not None
    assert not await match_store.list_calls()


async def test_closing_an_unserved_client_leaves_nothing_open(match_store: AnyStore) -> None:
    mm = replica(match_store, [1000.0])
    ana: Client = await join(mm, "ana")
    await mm.find_partner(ana.session)
    await mm.close_session(ana.session, "left")
    assert not await match_store.open_tickets()


async def test_taking_a_shard_over_ends_the_calls_its_dead_owner_left_live(match_store: AnyStore) -> None:
    now = [1000.0]
    dead = replica(match_store, now)
    ana, ben = await join(dead, "ana"), await join(dead, "ben")
    cleo = await join(dead, "cleo", "2.2.2.2")  # another shard: its calls are not this takeover's business
    dina = await join(dead, "dina", "2.2.2.3")
    for c in (ana, ben, cleo, dina):
        await dead.find_partner(c.session)
    emea_call, amer_call = ben.last(Matched).call_id, dina.last(Matched).call_id
    survivor = replica(match_store, now)
    await survivor.restore_shard("emea")
    row = await match_store.get_call(emea_call)
    assert row is not None and row.state == "ended" and row.end_reason == "matchmaker replica lost"
    assert row.shard == "emea"
    other = await match_store.get_call(amer_call)
    assert other is not None and other.state != "ended"


def test_shard_gauges_show_waiting_and_ownership() -> None:
    from prometheus_client import generate_latest

    from duet.services.matchmaker.metrics import MatchmakerMetrics

    metrics = MatchmakerMetrics(
        lambda: [], shards=lambda: {"emea": 3, "amer": 0}, owned=lambda: {"emea": True, "amer": False}
    )
    text = generate_latest(metrics.registry).decode()
    assert 'duet_matchmaker_shard_waiting_tickets{shard="emea"} 3.0' in text
    assert 'duet_matchmaker_shard_owned{shard="emea"} 1.0' in text
    assert 'duet_matchmaker_shard_owned{shard="amer"} 0.0' in text
