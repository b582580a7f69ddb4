"""LinkProber with a fake clock: RTT, loss and reachability of each neighbour link."""

from __future__ import annotations

import pytest

from duet.edge.probes import (
    DOWN_AFTER_S,
    IDLE_DOWN_AFTER_S,
    IDLE_PROBE_INTERVAL_S,
    PROBE_INTERVAL_S,
    LinkProber,
    Neighbour,
)

VIR = Neighbour("vir-1", 2, ("127.0.0.1", 4002))
SIN = Neighbour("sin-1", 3, ("127.0.0.1", 4003))


class Wire:
    """Probes sent, by neighbour: (probe number, sent at)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[tuple[Neighbour, int, float]] = []

    def send(self, n: Neighbour, number: int) -> None:
        self.sent.append((n, number, self.now))


BUSY = frozenset({"vir-1", "sin-1"})  # both links carry calls


def run(
    prober: LinkProber, wire: Wire, seconds: float, rtt_s: dict[str, float | None], busy: frozenset[str] = BUSY
) -> list[float]:
    """Tick every 0.1 s for ``seconds``; each neighbour answers after its RTT (None: never). Flip times."""
    flips = []
    answers: list[tuple[float, int, int]] = []
    end = wire.now + seconds
    while wire.now < end:
        for at, src, number in sorted(a for a in answers if a[0] <= wire.now):
            answers.remove((at, src, number))
            if prober.on_reply(src, number, at):
                flips.append(at)
        before = len(wire.sent)
        if prober.tick(wire.now, busy):
            flips.append(wire.now)
        for n, number, sent in wire.sent[before:]:
            rtt = rtt_s[n.edge_id]
            if rtt is not None:
                answers.append((sent + rtt, n.number, number))
        wire.now = round(wire.now + PROBE_INTERVAL_S, 6)
    return flips


def test_rtt_loss_and_reachability_of_answering_neighbours() -> None:
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR, SIN], 0.0)
    assert run(prober, wire, 3.0, {"vir-1": 0.04, "sin-1": 0.12}) == []
    samples = {s.peer_edge_id: s for s in prober.samples()}
    assert samples["vir-1"].rtt_ms == pytest.approx(40, abs=1)
    assert samples["sin-1"].rtt_ms == pytest.approx(120, abs=1)
    assert all(s.reachable and s.loss == 0 for s in samples.values())


def test_a_silent_busy_link_is_unreachable_after_0_4_s_and_reachable_again_on_its_first_answer() -> None:
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR], 0.0)
    run(prober, wire, 2.0, {"vir-1": 0.01})
    cut = wire.now
    flips = run(prober, wire, 2.0, {"vir-1": None})
    # The last answer came in just before the cut (the one in flight at the cut is lost with it).
    assert len(flips) == 1 and DOWN_AFTER_S - PROBE_INTERVAL_S - 0.02 <= flips[0] - cut <= DOWN_AFTER_S + 0.1
    sample = prober.samples()[0]
    assert not sample.reachable and sample.loss > 0.5
    healed = wire.now
    flips = run(prober, wire, 1.0, {"vir-1": 0.01})
    assert len(flips) == 1 and flips[0] - healed <= 0.15  # the first answer says so at once
    assert prober.samples()[0].reachable


def test_a_new_neighbour_gets_time_to_answer_first() -> None:
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR], 0.0)
    assert prober.samples()[0].reachable
    flips = run(prober, wire, 1.0, {"vir-1": None})
    assert len(flips) == 1 and flips[0] >= DOWN_AFTER_S and not prober.samples()[0].reachable


def test_a_stalled_process_is_not_taken_for_a_dead_link() -> None:
    """The edge's own loop stalls for 1 s: the answers that came meanwhile are read after the
    tick that ends the stall, and the link is not reported down for it."""
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR], 0.0)
    run(prober, wire, 1.0, {"vir-1": 0.01})
    pending = [(n, number) for n, number, sent in wire.sent if sent >= wire.now - 0.1]
    stalled_until = wire.now + 1.0
    assert not prober.tick(stalled_until, BUSY)  # the late tick runs before the socket is read
    for n, number in pending:
        prober.on_reply(n.number, number, stalled_until + 0.001)
    _, last, _ = wire.sent[-1]
    prober.on_reply(VIR.number, last, stalled_until + 0.002)
    assert not prober.tick(stalled_until + PROBE_INTERVAL_S, BUSY)
    assert prober.samples()[0].reachable


def test_replies_from_strangers_or_twice_are_ignored() -> None:
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR], 0.0)
    prober.tick(0.0, BUSY)
    _, number, _ = wire.sent[0]
    assert not prober.on_reply(99, number, 0.01)
    prober.on_reply(VIR.number, number, 0.01)
    prober.on_reply(VIR.number, number, 0.02)  # a duplicate
    assert prober.samples()[0].rtt_ms == pytest.approx(10)


def test_keeping_a_neighbour_keeps_its_history_and_a_moved_one_starts_again() -> None:
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR], 0.0)
    run(prober, wire, 1.0, {"vir-1": 0.02})
    prober.set_neighbours([VIR, SIN], wire.now)
    samples = {s.peer_edge_id: s for s in prober.samples()}
    assert samples["vir-1"].rtt_ms == pytest.approx(20, abs=1) and samples["sin-1"].rtt_ms == 0
    prober.set_neighbours([Neighbour("vir-1", 2, ("127.0.0.1", 5000))], wire.now)
    assert prober.samples()[0].rtt_ms == 0


def test_idle_links_are_probed_rarely_and_judged_on_a_longer_wait() -> None:
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR, SIN], 0.0)
    run(prober, wire, 5.0, {"vir-1": 0.02, "sin-1": 0.02}, busy=frozenset({"vir-1"}))
    sent = {n: sum(1 for m, _, _ in wire.sent if m.edge_id == n) for n in ("vir-1", "sin-1")}
    assert sent["vir-1"] == pytest.approx(5.0 / PROBE_INTERVAL_S, abs=2)
    assert sent["sin-1"] == pytest.approx(5.0 / IDLE_PROBE_INTERVAL_S, abs=2)
    samples = {s.peer_edge_id: s for s in prober.samples()}
    assert samples["sin-1"].rtt_ms == pytest.approx(20, abs=1) and samples["sin-1"].reachable

    cut = wire.now
    flips = run(prober, wire, 3.0, {"vir-1": 0.02, "sin-1": None}, busy=frozenset({"vir-1"}))
    assert len(flips) == 1 and IDLE_DOWN_AFTER_S - IDLE_PROBE_INTERVAL_S <= flips[0] - cut <= IDLE_DOWN_AFTER_S + 0.1


def test_a_link_turning_busy_gets_the_busy_wait_before_it_is_judged() -> None:
    """Its last idle-rate answer can be nearly an idle interval old: not a reason to call it down."""
    wire = Wire()
    prober = LinkProber(wire.send)
    prober.set_neighbours([VIR], 0.0)
    run(prober, wire, 2.0, {"vir-1": 0.02}, busy=frozenset())
    flips = run(prober, wire, 1.0, {"vir-1": 0.02})  # a call starts over it
    assert flips == [] and prober.samples()[0].reachable
    cut = wire.now
    flips = run(prober, wire, 1.0, {"vir-1": None})
    assert len(flips) == 1 and flips[0] - cut <= DOWN_AFTER_S + 0.1
