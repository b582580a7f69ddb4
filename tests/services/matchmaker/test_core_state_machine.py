"""Random sequences of find / next / cancel / leave / drop / block / report / waiting time against the
matchmaker core (in-memory fakes, a controlled clock), checking after every step:

- nobody is in two calls, nobody is matched with themselves;
- no blocked pair, no pair of recent partners, no user held for review is matched;
- both-way preferences hold at the relaxation level in force when the match was made
  (checked with this file's own model of the rules, not the rules' code);
- every ticket ends in exactly one of matched / cancelled / expired, and its client is told
  (unless its session is gone), and the store records the same outcome.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from duet.services.matchmaker.core import ClientSession, MatchConfig, Matchmaker
from duet.services.matchmaker.errors import HeldForReview, WrongState
from duet.services.matchmaker.events import CallEnded, Matched, Queued, SessionClosed, SessionEvent, TicketClosed
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, FixedLatency, InMemorySafetyStore, InMemoryStore
from duet.services.matchmaker.ports import EdgeInfo, EdgeState
from duet.services.matchmaker.preferences import AGE_BANDS, GENDERS, Preferences, Scope
from duet.services.matchmaker.rules.relaxation import RelaxSchedule

EDGES = [
    EdgeInfo("fra-1", 1, "Frankfurt", "127.0.0.1:1", "127.0.0.1:11", "127.0.0.1", EdgeState.ACTIVE),
    EdgeInfo("lon-1", 2, "London", "127.0.0.1:2", "127.0.0.1:12", "127.0.0.1", EdgeState.ACTIVE),
    EdgeInfo("vir-1", 3, "Virginia", "127.0.0.1:3", "127.0.0.1:13", "127.0.0.1", EdgeState.ACTIVE),
]
USERS = ["u0", "u1", "u2", "u3", "u4", "u5"]
IP_OF = {"u0": "1.0.0.1", "u1": "1.0.0.2", "u2": "2.0.0.1", "u3": "2.0.0.2", "u4": "3.0.0.1", "u5": "3.0.0.2"}
NEAR = {frozenset(("Frankfurt", "London"))}  # 15 ms; Virginia is 76-89 ms from both, beyond the 50 ms "near"
INTERESTS_AFTER_S, ANYWHERE_AFTER_S, TTL_S, REVIEW_AT = 10.0, 30.0, 60.0, 2


def sometimes(strategy: st.SearchStrategy, empty: object) -> st.SearchStrategy:  # type: ignore[type-arg]
    # Mostly no condition, so that pairs form often enough to test the conditions that are set.
    return st.one_of(st.just(empty), st.just(empty), strategy)


preferences = st.builds(
    Preferences,
    languages=sometimes(st.frozensets(st.sampled_from(["en", "fr"]), min_size=1, max_size=2), frozenset()),
    interests=sometimes(st.frozensets(st.sampled_from(["music", "film"]), min_size=1, max_size=2), frozenset()),
    gender=st.sampled_from(GENDERS[:2]),
    want_genders=sometimes(st.frozensets(st.sampled_from(GENDERS[:2]), min_size=1, max_size=1), frozenset()),
    age_band=st.sampled_from(("", *AGE_BANDS[:2])),
    want_age_bands=sometimes(st.frozensets(st.sampled_from(AGE_BANDS[:2]), min_size=1, max_size=1), frozenset()),
    scope=st.sampled_from(list(Scope)),
)
maybe_preferences = st.one_of(st.none(), st.just(Preferences()), preferences)


@dataclass
class OpenTicket:
    ticket_id: str
    queued_at_ms: float
    preferences: Preferences
    region: str


@dataclass
class Client:
    session: ClientSession
    outbox: asyncio.Queue[SessionEvent | SessionClosed] = field(default_factory=asyncio.Queue)


def waited(t: OpenTicket, now_ms: float, seconds: float) -> bool:
    return t.queued_at_ms <= now_ms - seconds * 1000


def both_ways_hold(a: OpenTicket, b: OpenTicket, now_ms: float) -> str | None:
    """This file's own reading of the matching rules; None when the pair is allowed."""
    pa, pb = a.preferences, b.preferences
    if pa.languages and pb.languages and not pa.languages & pb.languages:
        return "no shared language"
    for me, other in ((pa, pb), (pb, pa)):
        if me.want_genders and other.gender not in me.want_genders:
            return "gender not wanted"
        if me.want_age_bands and other.age_band not in me.want_age_bands:
            return "age band not wanted"
    near_needed = any(t.preferences.scope is Scope.NEAR and not waited(t, now_ms, ANYWHERE_AFTER_S) for t in (a, b))
    if near_needed and a.region != b.region and frozenset((a.region, b.region)) not in NEAR:
        return "not near"
    strict = any(t.preferences.interests and not waited(t, now_ms, INTERESTS_AFTER_S) for t in (a, b))
    if strict and not pa.interests & pb.interests:
        return "no shared interest while interests are required"
    return None


class MatchmakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now_s = 1_700_000_000.0
        self.clients: dict[str, Client] = {}
        # The model.
        self.open_ticket: dict[str, OpenTicket] = {}  # user -> their waiting ticket
        self.ticket_user: dict[str, str] = {}
        self.ticket_end: dict[str, list[str]] = {}  # ticket -> terminal events its client got
        self.gone_tickets: set[str] = set()  # tickets whose session ended while they waited
        self.blocked: set[frozenset[str]] = set()
        self.recent: dict[str, deque[str]] = {}
        self.reporters: dict[str, set[str]] = {u: set() for u in USERS}
        self.last_call: dict[str, str] = {}  # user -> the last call id they were matched in
        self.seen_calls: set[str] = set()

    @initialize(recent=st.sampled_from([0, 1, 2]))
    def start(self, recent: int) -> None:
        # recent 0: blocks alone must keep a pair apart; 1-2: recent partners too.
        self.recent = {u: deque(maxlen=recent) for u in USERS}
        self.store = InMemoryStore()
        self.safety = InMemorySafetyStore()
        routing = FakeRouting(EDGES, ingress_by_prefix={"1.": "fra-1", "2.": "lon-1", "3.": "vir-1"})
        self.mm = Matchmaker(
            self.store,
            routing,
            FakeEdges(),
            config=MatchConfig(
                recent_partners=recent,
                ticket_ttl_s=TTL_S,
                relax=RelaxSchedule(INTERESTS_AFTER_S, ANYWHERE_AFTER_S),
                near_rtt_ms=50.0,
                review_threshold=REVIEW_AT,
                rate_limit_requests=10_000,
            ),
            safety=self.safety,
            latency=FixedLatency.of(
                {("Frankfurt", "London"): 15.0, ("Frankfurt", "Virginia"): 89.0, ("London", "Virginia"): 76.0}
            ),
            clock=lambda: self.now_s,
        )
        for user in USERS:  # everyone starts online; drop and open_session change that
            self.open_session(user)

    def run(self, coro: object) -> None:
        self.loop.run_until_complete(coro)  # type: ignore[arg-type]
        self.absorb()

    def teardown(self) -> None:
        try:
            for client in list(self.clients.values()):
                self.loop.run_until_complete(self.mm.close_session(client.session, "teardown"))
                self.gone(client.session.user_id)
            self.absorb()
            self.loop.run_until_complete(self.mm.stop())
            rows = self.loop.run_until_complete(self.store.open_tickets())
            assert not rows, f"tickets left open: {rows}"
            for ticket_id, user in self.ticket_user.items():
                row = self.loop.run_until_complete(self.store.get_ticket(ticket_id))
                assert row is not None and row.outcome is not None, ticket_id
                ends = self.ticket_end.get(ticket_id, [])
                assert len(ends) <= 1, (ticket_id, ends)
                if row.outcome == "matched":
                    assert ends == ["matched"], (ticket_id, ends)
                elif row.outcome == "expired":
                    assert ends == ["expired"], (ticket_id, ends)
                else:
                    assert row.outcome.startswith("cancelled"), row.outcome
                    assert ends in (["cancelled"], []), (ticket_id, ends)
                    assert ends or ticket_id in self.gone_tickets, f"{user}'s ticket {ticket_id} ended untold"
        finally:
            self.loop.close()

    # -- what the clients were told ------------------------------------------------------

    def gone(self, user: str) -> None:
        t = self.open_ticket.pop(user, None)
        if t is not None:
            self.gone_tickets.add(t.ticket_id)
        self.clients.pop(user, None)

    def absorb(self) -> None:
        now_ms = self.now_s * 1000
        for user, client in list(self.clients.items()):
            while not client.outbox.empty():
                event = client.outbox.get_nowait()
                if isinstance(event, Queued):
                    assert user not in self.open_ticket, f"{user} got a second ticket while one was open"
                    self.open_ticket[user] = OpenTicket(
                        event.ticket_id, event.queued_at, client.session.preferences, client.session.region
                    )
                    self.ticket_user[event.ticket_id] = user
                elif isinstance(event, TicketClosed):
                    t = self.open_ticket.pop(user)
                    assert t.ticket_id == event.ticket_id
                    # "cancelled", "expired: ...", "held for review: ..." (a cancellation by the matchmaker)
                    kind = event.reason.split(":")[0]
                    self.ticket_end.setdefault(t.ticket_id, []).append(
                        "cancelled" if kind == "held for review" else kind
                    )
                elif isinstance(event, Matched):
                    self.last_call[user] = event.call_id
        # New calls: check the pair as the match was made (now: the fake clock stands still within a step).
        for call_id, call in list(self.mm._calls.items()):
            if call_id in self.seen_calls:
                continue
            self.seen_calls.add(call_id)
            a, b = (s.user_id for s in call.sessions)
            assert a != b, "matched with themselves"
            assert frozenset((a, b)) not in self.blocked, f"blocked pair {a}, {b} matched"
            assert b not in self.recent[a] and a not in self.recent[b], f"recent partners {a}, {b} matched again"
            for u in (a, b):
                assert len(self.reporters[u]) < REVIEW_AT, f"{u} is held for review but was matched"
            ta, tb = self.open_ticket.pop(a), self.open_ticket.pop(b)
            why = both_ways_hold(ta, tb, now_ms)
            assert why is None, f"{a} and {b} matched with {why}: {ta} / {tb}"
            for t in (ta, tb):
                self.ticket_end.setdefault(t.ticket_id, []).append("matched")
            self.recent[a].append(b)
            self.recent[b].append(a)

    # -- steps -----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS))
    def open_session(self, user: str) -> None:
        old = self.clients.get(user)
        if old is not None:
            self.gone(user)  # the new session replaces the old one
        client = Client(session=None)  # type: ignore[arg-type]

        async def go() -> None:
            client.session = await self.mm.open_session(user, user.upper(), IP_OF[user], client.outbox)
            await self.mm.attach_leg(client.session, "v=0 offer")

        self.loop.run_until_complete(go())
        self.clients[user] = client
        self.absorb()

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), prefs=maybe_preferences, use_next=st.booleans())
    def find(self, data: st.DataObject, prefs: Preferences | None, use_next: bool) -> None:
        user = data.draw(st.sampled_from(sorted(self.clients)))
        session = self.clients[user].session
        busy = session.ticket is not None or session.call is not None
        held = len(self.reporters[user]) >= REVIEW_AT
        try:
            if use_next:
                self.run(self.mm.next(session, prefs))
            else:
                self.run(self.mm.find_partner(session, prefs))
        except WrongState:
            assert busy and not use_next
        except HeldForReview:
            assert held
        else:
            assert not held or (use_next and session.ticket is not None)

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), prefs=maybe_preferences)
    def find_again(self, data: st.DataObject, prefs: Preferences | None) -> None:
        # Finding is most of what users do: a second rule gives it more of the steps.
        self.find(data, prefs, use_next=False)

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from(sorted(self.clients)))
        waiting = self.open_ticket.get(user)
        self.run(self.mm.cancel(self.clients[user].session))
        assert user not in self.open_ticket
        if waiting is not None:
            assert self.ticket_end[waiting.ticket_id] == ["cancelled"]

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), how=st.sampled_from(["leave", "stream closed"]))
    def drop(self, data: st.DataObject, how: str) -> None:
        user = data.draw(st.sampled_from(sorted(self.clients)))
        session = self.clients[user].session
        partner = session.call.partner_of(session) if session.call is not None else None
        self.gone(user)
        self.loop.run_until_complete(self.mm.close_session(session, how))
        if partner is not None:
            outbox = self.clients[partner.user_id].outbox
            pending = list(outbox._queue)  # type: ignore[attr-defined]
            told = [e for e in pending if isinstance(e, CallEnded)]
            assert told and told[-1].reason == "partner_left", told
        self.absorb()

    @precondition(lambda self: self.last_call)
    @rule(data=st.data(), report=st.booleans())
    def block_or_report(self, data: st.DataObject, report: bool) -> None:
        user = data.draw(st.sampled_from(sorted(self.last_call)))
        if user not in self.clients:
            return
        call_id = self.last_call[user]
        row = self.loop.run_until_complete(self.store.get_call(call_id))
        assert row is not None
        partner = row.user_b if row.user_a == user else row.user_a
        session = self.clients[user].session
        if report:
            self.run(self.mm.report(session, call_id, "rude"))
            self.reporters[partner].add(user)
        else:
            self.run(self.mm.block(session, call_id))
            self.blocked.add(frozenset((user, partner)))
            assert session.call is None or session.call.partner_of(session).user_id != partner

    @rule(seconds=st.sampled_from([1.0, 5.0, 10.0, 25.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        self.now_s += seconds
        self.run(self.mm.run_due())
        now_ms = self.now_s * 1000
        for user, t in self.open_ticket.items():
            assert t.queued_at_ms > now_ms - TTL_S * 1000, f"{user}'s ticket outlived its lifetime"

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def nobody_in_two_calls(self) -> None:
        users = [s.user_id for call in self.mm._calls.values() for s in call.sessions]
        assert len(users) == len(set(users)), users
        for client in self.clients.values():
            s = client.session
            assert not (s.ticket is not None and s.call is not None), "waiting and in a call at once"

    @invariant()
    def pool_matches_the_model(self) -> None:
        assert {t.ticket_id for t in self.mm.pool.waiting()} == {t.ticket_id for t in self.open_ticket.values()}

    @invariant()
    def nobody_waiting_could_be_paired(self) -> None:
        # Event-driven: a compatible pair is never left waiting (as of the last step's time).
        ctx = self.mm.pair_context()
        waiting = self.mm.pool.waiting()
        for i, x in enumerate(waiting):
            for y in waiting[i + 1 :]:
                assert not all(f.allows(x, y, ctx) for f in self.mm.pool.filters), (x, y)


MatchmakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestMatchmakerStateMachine = MatchmakerMachine.TestCase
