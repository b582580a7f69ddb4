"""Random sequences of find / next / cancel / leave / drop / block / report / add friend / call a
friend / answer / hang up / waiting time against the matchmaker core (in-memory fakes, a controlled
clock), checking after every step:

- nobody is in two calls, nobody is matched with themselves;
- no blocked pair, no pair of recent partners, no user held for review is matched;
- both-way preferences hold at the relaxation level in force when the match was made
  (checked with this file's own model of the rules, not the rules' code);
- every ticket ends in exactly one of matched / cancelled / expired, and its client is told
  (unless its session is gone), and the store records the same outcome;
- friends are exactly the pairs where both asked (and no block came after), a friend call is
  only made between friends, nobody is in a call and a ring at once, and every ring ends
  exactly once: accepted, or one RingEnded reason.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.errors import BadRequest, Forbidden, HeldForReview, NotFound, WrongState
from duet.services.matchmaker.events import (
    CallEnded,
    Matched,
    Queued,
    RingEnded,
    Ringing,
    SessionClosed,
    SessionEvent,
    TicketClosed,
)
from duet.services.matchmaker.fakes import (
    FakeEdges,
    FakeRouting,
    FixedLatency,
    InMemoryFriendStore,
    InMemorySafetyStore,
    InMemoryStore,
)
from duet.services.matchmaker.ports import EdgeInfo, EdgeState
from duet.services.matchmaker.preferences import AGE_BANDS, GENDERS, Preferences, Scope
from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.matchmaker.session_state import ClientSession

EDGES = [
    EdgeInfo("fra-1", 1, "Frankfurt", "127.0.0.1:1", "127.0.0.1:11", "127.0.0.1", EdgeState.ACTIVE),
    EdgeInfo("lon-1", 2, "London", "127.0.0.1:2", "127.0.0.1:12", "127.0.0.1", EdgeState.ACTIVE),
    EdgeInfo("vir-1", 3, "Virginia", "127.0.0.1:3", "127.0.0.1:13", "127.0.0.1", EdgeState.ACTIVE),
]
USERS = ["u0", "u1", "u2", "u3", "u4", "u5"]
IP_OF = {"u0": "1.0.0.1", "u1": "1.0.0.2", "u2": "2.0.0.1", "u3": "2.0.0.2", "u4": "3.0.0.1", "u5": "3.0.0.2"}
NEAR = {frozenset(("Frankfurt", "London"))}  # 15 ms; Virginia is 76-89 ms from both, beyond the 50 ms "near"
INTERESTS_AFTER_S, ANYWHERE_AFTER_S, TTL_S, REVIEW_AT, RING_S = 10.0, 30.0, 60.0, 2, 20.0


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


def note(what: str) -> None:
    event(what)  # counted by --hypothesis-show-statistics: how often the friends paths are reached


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
        self.friend_requests: set[tuple[str, str]] = set()  # (requester, requested)
        self.friends: set[frozenset[str]] = set()
        self.ring_ends: dict[str, list[str]] = {}  # ring id -> "accepted" and/or RingEnded reasons seen

    @initialize(recent=st.sampled_from([0, 1, 2]))
    def start(self, recent: int) -> None:
        # recent 0: blocks alone must keep a pair apart; 1-2: recent partners too.
        self.recent = {u: deque(maxlen=recent) for u in USERS}
        self.store = InMemoryStore()
        self.safety = InMemorySafetyStore()
        self.friend_store = InMemoryFriendStore(self.store)
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
                ring_timeout_s=RING_S,
            ),
            safety=self.safety,
            friends=self.friend_store,
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
                self.absorb()  # what the others were told (a ring ending) before this one is gone
                self.gone(client.session.user_id)
            self.absorb()
            self.loop.run_until_complete(self.mm.stop())
            assert not self.mm._rings, "rings left open"
            for ring_id, ends in self.ring_ends.items():
                assert len(set(ends)) == 1, f"ring {ring_id} ended in more than one way: {ends}"
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
                elif isinstance(event, Ringing):
                    self.ring_ends.setdefault(event.request_id, [])
                elif isinstance(event, RingEnded):
                    self.ring_ends.setdefault(event.request_id, []).append(event.reason)
                    note(f"ring ended: {event.reason}")
        # New calls: check the pair as the match was made (now: the fake clock stands still within a step).
        for call_id, call in list(self.mm._calls.items()):
            if call_id in self.seen_calls:
                continue
            self.seen_calls.add(call_id)
            a, b = (s.user_id for s in call.sessions)
            assert a != b, "matched with themselves"
            assert frozenset((a, b)) not in self.blocked, f"blocked pair {a}, {b} matched"
            if call.kind == "friend":
                assert frozenset((a, b)) in self.friends, f"{a} and {b} had a friend call but are not friends"
                for u in (a, b):
                    assert u not in self.open_ticket, f"{u} is waiting while in a friend call"
                continue
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
            self.friends.discard(frozenset((user, partner)))  # a block ends a friendship
            assert session.call is None or session.call.partner_of(session).user_id != partner

    @precondition(lambda self: self.last_call)
    @rule(data=st.data(), both=st.booleans())
    def add_friend(self, data: st.DataObject, both: bool) -> None:
        user = data.draw(st.sampled_from(sorted(self.last_call)))
        if user not in self.clients:
            return
        call_id = self.last_call[user]
        row = self.loop.run_until_complete(self.store.get_call(call_id))
        assert row is not None
        partner = row.user_b if row.user_a == user else row.user_a
        self.ask_to_be_friends(user, partner, call_id)
        if both and partner in self.clients:  # the partner presses "add friend" too, at once
            self.ask_to_be_friends(partner, user, call_id)

    def ask_to_be_friends(self, user: str, partner: str, call_id: str) -> None:
        pair = frozenset((user, partner))
        try:
            self.run(self.mm.add_friend(self.clients[user].session, call_id))
        except Forbidden:
            assert pair in self.blocked
            return
        assert pair not in self.blocked
        if pair in self.friends:
            return
        if (partner, user) in self.friend_requests:
            self.friend_requests -= {(partner, user), (user, partner)}
            self.friends.add(pair)
            note("became friends")
        else:
            self.friend_requests.add((user, partner))

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), anyone=st.sampled_from(USERS), idle_first=st.booleans())
    def call_friend(self, data: st.DataObject, anyone: str, idle_first: bool, *, has_friends: bool = False) -> None:
        with_friends = sorted(u for u in self.clients if any(u in pair for pair in self.friends))
        caller = data.draw(st.sampled_from(with_friends if has_friends and with_friends else sorted(self.clients)))
        # Mostly a friend of theirs (else the call is refused for want of one), sometimes anyone.
        theirs = sorted(u for pair in self.friends if caller in pair for u in pair - {caller})
        callee = data.draw(st.sampled_from(theirs)) if theirs and anyone != USERS[0] else anyone
        session = self.clients[caller].session
        if idle_first:  # as the web client does: leave the pool, hang up, then ring
            self.run(self.mm.cancel(session))
            self.run(self.mm.hang_up(session))
        friend = self.clients.get(callee)
        allowed = (
            caller != callee
            and session.ticket is None
            and session.call is None
            and session.ring is None
            and frozenset((caller, callee)) not in self.blocked
            and frozenset((caller, callee)) in self.friends
            and friend is not None
            and friend.session.call is None
            and friend.session.ring is None
        )
        try:
            self.run(self.mm.call_friend(session, callee))
        except (BadRequest, Forbidden, NotFound, WrongState) as exc:
            assert not allowed
            note(f"call refused: {type(exc).__name__}")
            return
        assert allowed, f"{caller} could ring {callee}"
        ring = session.ring
        assert ring is not None and friend is not None and friend.session.ring is ring

    @precondition(lambda self: self.friends and self.clients)
    @rule(data=st.data(), idle_first=st.booleans())
    def call_a_friend(self, data: st.DataObject, idle_first: bool) -> None:
        # Calls between friends are what the friends steps are about: a second rule gives them more steps.
        self.call_friend(data, USERS[1], idle_first, has_friends=True)

    @precondition(lambda self: self.mm._rings)
    @rule(data=st.data(), accept=st.booleans())
    def answer(self, data: st.DataObject, accept: bool) -> None:
        ring_id = data.draw(st.sampled_from(sorted(self.mm._rings)))
        ring = self.mm._rings[ring_id]
        caller, callee = ring.caller.user_id, ring.callee.user_id
        self.run(self.mm.answer_call(ring.callee, ring_id, accept))
        assert ring_id not in self.mm._rings
        if accept:
            self.ring_ends[ring_id].append("accepted")
            note("friend call connected")
            call = ring.callee.call
            assert call is not None and call.kind == "friend", "an accepted ring did not connect"
            assert {s.user_id for s in call.sessions} == {caller, callee}

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def hang_up(self, data: st.DataObject) -> None:
        user = data.draw(st.sampled_from(sorted(self.clients)))
        self.run(self.mm.hang_up(self.clients[user].session))
        assert self.clients[user].session.call is None

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
    def friends_match_the_model(self) -> None:
        assert set(self.friend_store.friends) == self.friends
        assert not self.friends & self.blocked, "a blocked pair are friends"

    @invariant()
    def rings_are_consistent(self) -> None:
        for ring_id, ring in self.mm._rings.items():
            assert ring.caller.ring is ring and ring.callee.ring is ring, ring_id
            assert ring.caller.call is None and ring.callee.call is None, "ringing while in a call"
            assert frozenset((ring.caller.user_id, ring.callee.user_id)) in self.friends
        for client in self.clients.values():
            s = client.session
            assert s.ring is None or s.ring.request_id in self.mm._rings, "a session holds an ended ring"

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
