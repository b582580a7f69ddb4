"""Who waits and who arrives: realistic preference mixes, seeded, with no server in sight.

A pool of thousands only forms from people nobody compatible is waiting for
(matching is event-driven), so the waiting users are drawn from the surplus a
busy peak leaves behind: mostly men who want to meet women, and people whose
language, age or gender wishes are narrow, across the 13 regions with their
own language mixes. ``plan_waiting`` keeps a candidate only if no waiting one
is compatible with it even once every soft criterion has relaxed, so the
pool stays put while the bench runs (the matchmaker's relaxation timer finds
nothing to pair).

Each newcomer is made for one waiting user (its *target*, a different one
each): it is of a gender and age band the target wants, wants the target's,
speaks one of the target's languages, sits in or near the target's region
when either wants "near me", shares an interest when the target gave any,
and can decode the target's video. Whether the pool then pairs it with the
target or with an older or better-scored compatible user is the rules'
business: nothing is skipped for the bench.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from duet.routing.reference import reference_rtt_ms
from duet.services.matchmaker.pool import WaitingPool
from duet.services.matchmaker.preferences import AGE_BANDS, Preferences, Scope
from duet.services.matchmaker.rules.base import PairContext
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.matchmaker.ticket import Ticket

# Region -> (relative share of users, its language mix). Shares follow the regions' populations loosely.
REGIONS: dict[str, tuple[float, dict[str, float]]] = {
    "Virginia": (14, {"en": 0.85, "es": 0.15}),
    "Washington(WUS2)": (9, {"en": 0.8, "es": 0.15, "zh": 0.05}),
    "SaoPaulo": (10, {"pt": 0.85, "es": 0.15}),
    "London": (8, {"en": 0.9, "pl": 0.05, "fr": 0.05}),
    "Frankfurt": (10, {"de": 0.5, "fr": 0.15, "tr": 0.1, "ru": 0.1, "pl": 0.1, "it": 0.05}),
    "Dubai": (6, {"ar": 0.75, "hi": 0.15, "en": 0.1}),
    "Pune(~Mumbai)": (11, {"hi": 0.6, "en": 0.3, "mr": 0.1}),
    "Singapore": (8, {"id": 0.45, "en": 0.25, "th": 0.15, "vi": 0.15}),
    "HongKong": (5, {"zh": 0.8, "en": 0.2}),
    "Tokyo": (6, {"ja": 0.95, "en": 0.05}),
    "Seoul": (6, {"ko": 0.95, "en": 0.05}),
    "Sydney": (3, {"en": 1.0}),
    "Johannesburg": (4, {"en": 0.6, "zu": 0.2, "af": 0.2}),
}
INTERESTS = (
    "music", "gaming", "movies", "travel", "football", "anime", "fitness", "cooking", "books", "art",
    "tech", "fashion", "photography", "dance", "kpop", "basketball", "memes", "pets", "hiking", "coding",
    "cricket", "startups", "poetry", "languages", "cars", "chess", "yoga", "politics", "science", "crypto",
)  # fmt: skip
AGE_SHARES = (0.35, 0.33, 0.18, 0.09, 0.05)  # 18-24 ... 55+
BROWSER = ("VP8", "H264/42e01f")  # what the fake edge gives a VP8 + H.264 offer
H264_ONLY = ("H264/42e01f",)
NEAR_RTT_MS = 80.0
# The waiting mix: (gender, wanted genders, share). Men who want women are the usual surplus of such apps.
WAITING_GENDERS: tuple[tuple[str, frozenset[str], float], ...] = (
    ("male", frozenset({"female"}), 0.72),
    ("male", frozenset({"female", "nonbinary"}), 0.06),
    ("female", frozenset({"female"}), 0.05),
    ("male", frozenset({"male"}), 0.05),
    ("female", frozenset({"male"}), 0.04),
    ("nonbinary", frozenset(), 0.03),
    ("female", frozenset(), 0.02),
    ("male", frozenset(), 0.02),
    ("", frozenset(), 0.01),
)


@dataclass(frozen=True)
class Profile:
    """One bench user: who they are, where, what their client decodes, and whom they want to meet."""

    user_id: str
    region: str
    video: tuple[str, ...]  # codecs its client sends first and decodes
    preferences: Preferences
    target: str = ""  # a newcomer's: the waiting user it was made for

    @property
    def offer_sdp(self) -> str:
        # The fake edge answers an H.264-only offer with an H.264-only leg (fakes/edges.py).
        return "v=0 m=video H264" if self.video == H264_ONLY else "v=0 m=video VP8 H264"

    @property
    def codecs(self) -> VideoCodecs:
        return VideoCodecs.of(self.video[0], self.video)


@dataclass
class Population:
    waiting: list[Profile]  # in the order they queue
    newcomers: list[Profile]  # in the order they arrive
    blocks: set[frozenset[str]] = field(default_factory=set)  # pairs where one blocked the other
    met: set[frozenset[str]] = field(default_factory=set)  # pairs who met recently (earlier calls)
    candidates_drawn: int = 0  # waiting candidates drawn to find len(waiting) that fit together


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _region(rng: random.Random) -> str:
    return rng.choices(list(REGIONS), weights=[share for share, _ in REGIONS.values()])[0]


def _languages(rng: random.Random, region: str) -> frozenset[str]:
    roll = rng.random()
    if roll < 0.08:
        return frozenset()  # speaks with anyone
    first = _pick(rng, REGIONS[region][1])
    if roll < 0.68 or first == "en":
        return frozenset({first})
    return frozenset({first, "en"})


def _interests(rng: random.Random) -> frozenset[str]:
    if rng.random() < 0.4:
        return frozenset()
    # Skewed: the first topics are the popular ones.
    weights = [1 / (i + 1) for i in range(len(INTERESTS))]
    return frozenset(rng.choices(INTERESTS, weights=weights, k=rng.randint(1, 4)))


def _age_band(rng: random.Random) -> str:
    return "" if rng.random() < 0.03 else rng.choices(AGE_BANDS, weights=AGE_SHARES)[0]


def _wanted_ages(rng: random.Random, own: str) -> frozenset[str]:
    if not own or rng.random() < 0.55:
        return frozenset()
    i = AGE_BANDS.index(own)
    return frozenset(AGE_BANDS[max(0, i - rng.randint(0, 1)) : i + 1 + rng.randint(0, 1)])


def _video(rng: random.Random) -> tuple[str, ...]:
    return H264_ONLY if rng.random() < 0.05 else BROWSER


def waiting_candidate(rng: random.Random, user_id: str) -> Profile:
    region = _region(rng)
    gender, wants, _ = rng.choices(WAITING_GENDERS, weights=[w for *_, w in WAITING_GENDERS])[0]
    age = _age_band(rng)
    prefs = Preferences(
        languages=_languages(rng, region),
        interests=_interests(rng),
        gender=gender,
        want_genders=wants,
        age_band=age,
        want_age_bands=_wanted_ages(rng, age),
        scope=Scope.NEAR if rng.random() < 0.25 else Scope.ANYWHERE,
    )
    return Profile(user_id, region, _video(rng), prefs)


def _near_regions(region: str) -> list[str]:
    return [r for r in REGIONS if r == region or reference_rtt_ms(r, region) <= NEAR_RTT_MS]


def newcomer_for(rng: random.Random, target: Profile, user_id: str) -> Profile:
    """A newcomer the target would accept and who accepts the target, with its own extra wishes."""
    t = target.preferences
    gender = rng.choice(sorted(t.want_genders)) if t.want_genders else rng.choice(("female", "male", "nonbinary"))
    want_genders = frozenset() if not t.gender or rng.random() < 0.4 else frozenset({t.gender, *rng.sample(("female", "male", "nonbinary"), 1)})  # fmt: skip
    age = rng.choice(sorted(t.want_age_bands)) if t.want_age_bands else (t.age_band or _age_band(rng) or "25-34")
    want_ages = frozenset() if not t.age_band or rng.random() < 0.5 else _wanted_ages(rng, t.age_band) | {t.age_band}
    if t.languages:
        languages = frozenset({rng.choice(sorted(t.languages))}) | (frozenset({"en"}) if rng.random() < 0.3 else frozenset())  # fmt: skip
    else:
        languages = _languages(rng, target.region)
    scope = Scope.NEAR if rng.random() < 0.2 else Scope.ANYWHERE
    region = rng.choice(_near_regions(target.region)) if (t.scope is Scope.NEAR or scope is Scope.NEAR) else _region(rng)  # fmt: skip
    # The target may still require a shared interest; a newcomer who gave some requires one for 10 s.
    extra = sorted(_interests(rng))[:3]  # at most 4 with the shared one
    interests = frozenset({rng.choice(sorted(t.interests)), *extra}) if t.interests else frozenset()
    # Decodes what the target sends, and sends what it decodes (a browser sends VP8 first).
    video = target.video
    prefs = Preferences(languages, interests, gender, want_genders, age, want_ages, scope)
    return Profile(user_id, region, video, prefs, target=target.user_id)


def _planning_ticket(p: Profile, queued_at: float) -> Ticket:
    return Ticket(f"plan-{p.user_id}", p.user_id, f"s-{p.user_id}", "edge", queued_at, p.codecs, region=p.region, preferences=p.preferences)  # fmt: skip


@dataclass
class _PlannedHistory:
    blocks: set[frozenset[str]]
    met: set[frozenset[str]]

    def blocked(self, user_a: str, user_b: str) -> bool:
        return frozenset({user_a, user_b}) in self.blocks

    def met_recently(self, user_a: str, user_b: str) -> bool:
        return frozenset({user_a, user_b}) in self.met


class _ReferenceRtt:
    def rtt_ms(self, region_a: str, region_b: str) -> float | None:
        return reference_rtt_ms(region_a, region_b)


def plan_waiting(
    rng: random.Random, count: int, history: _PlannedHistory, *, max_draws: int | None = None
) -> tuple[WaitingPool, list[Profile], int]:
    """``count`` waiting users no two of whom may ever be paired (every soft criterion relaxed), the
    planning pool holding them, and how many candidates were drawn. The pool itself decides: a
    candidate it would pair with someone already chosen is dropped."""
    pool = WaitingPool()
    chosen: list[Profile] = []
    limit = max_draws if max_draws is not None else 20 * count + 1000
    draws = 0
    while len(chosen) < count:
        if draws >= limit:
            raise RuntimeError(f"only {len(chosen)} of {count} waiting users fit together after {draws} draws")
        draws += 1
        p = waiting_candidate(rng, f"w{draws:06d}")
        ticket = _planning_ticket(p, draws)
        # An hour on: interests optional and "near" widened for everyone, so only hard filters keep them apart.
        ctx = PairContext(draws + 3_600_000.0, RelaxSchedule(), _ReferenceRtt(), history, NEAR_RTT_MS)
        if pool.find_partner(ticket, ctx) is None:
            pool.offer(ticket, ctx)
            chosen.append(p)
    return pool, chosen, draws


def make_population(seed: int, waiting: int, newcomers: int) -> Population:
    """The waiting users, the newcomers (each made for a waiting user), some blocks and recent meetings.

    About one newcomer in ten blocked (or was blocked by) a few waiting users of its language, and one
    in ten met a few recently, whom the pool must then pass over; its target is never among them.
    Newcomers are planned in arrival order on a copy of the pool: each target is one still waiting
    there, and the pairing the pool makes there takes its partner out, so that, arriving in this order,
    every newcomer finds a compatible partner waiting. (The real run's waits differ a little from the
    plan's, and newcomers arrive several at once, so now and then an earlier newcomer takes a later
    one's only partner: the bench counts those and checks that nobody compatible was left waiting.)
    """
    if newcomers > waiting:
        raise ValueError(f"newcomers ({newcomers}) cannot exceed waiting ({waiting}): each needs its own target")
    rng = random.Random(seed)
    history = _PlannedHistory(set(), set())
    pool, chosen, draws = plan_waiting(rng, waiting, history)
    by_language: dict[str, list[Profile]] = {}
    for p in chosen:
        for lang in p.preferences.languages or {""}:
            by_language.setdefault(lang, []).append(p)
    untargeted = list(chosen)
    arrivals: list[Profile] = []
    while len(arrivals) < newcomers and untargeted:
        target = untargeted.pop(rng.randrange(len(untargeted)))
        if pool.ticket_of(target.user_id) is None:
            continue  # an earlier newcomer's partner
        n = newcomer_for(rng, target, f"n{len(arrivals):06d}")
        others = by_language.get(next(iter(sorted(n.preferences.languages)), "")) or chosen
        for pairs in (history.blocks, history.met):
            if rng.random() < 0.1:
                pairs.update(frozenset({n.user_id, o.user_id}) for o in rng.sample(others, min(3, len(others))) if o.user_id != n.target)  # fmt: skip
        # The waiting have waited a minute (relaxed, as most are by the time newcomers come), the newcomer
        # just came (its interests and "near" in force); ``newcomer_for`` makes it fit its target even with
        # everything in force, so a target still waiting is always a possible partner.
        now = draws + 60_000.0
        if pool.offer(_planning_ticket(n, now), PairContext(now, RelaxSchedule(), _ReferenceRtt(), history, NEAR_RTT_MS)) is None:  # fmt: skip
            raise RuntimeError(
                f"newcomer {n.user_id} fits no waiting user, not even {n.target}: the generator is wrong"
            )
        arrivals.append(n)
    if len(arrivals) < newcomers:
        raise RuntimeError(f"only {len(arrivals)} of {newcomers} newcomers could be given a waiting partner")
    return Population(chosen, arrivals, history.blocks, history.met, draws)
