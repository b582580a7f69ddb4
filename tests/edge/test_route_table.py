"""The edge's route table: a delta applied to a table gives the table it describes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from duet.edge.backbone import RouteEntry, RouteTable
from duet.edge.bridge import BridgeSide
from duet.edge.relay import EdgeRelay

IDS = [f"e{i}" for i in range(8)]


@st.composite
def tables(draw: st.DrawFn) -> list[RouteEntry]:
    """A table: distinct destinations with distinct numbers (drawn from a small range, so a later
    table often hands one destination's number to another)."""
    dests = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=len(IDS)))
    numbers = draw(st.lists(st.integers(1, 10), min_size=len(dests), max_size=len(dests), unique=True))
    return [
        RouteEntry(
            d, n, draw(st.sampled_from(IDS)), ("127.0.0.1", draw(st.integers(1, 3))), draw(st.sampled_from([1.0, 2.0]))
        )
        for d, n in zip(dests, numbers, strict=True)
    ]


@settings(max_examples=500)
@given(tables(), tables())
def test_a_delta_applied_equals_the_whole_new_table(before: list[RouteEntry], after: list[RouteEntry]) -> None:
    held = RouteTable()
    held.replace(1, before)
    old = {e.dest_edge_id: e for e in before}
    changed = [e for e in after if old.get(e.dest_edge_id) != e]
    removed = sorted(set(old) - {e.dest_edge_id for e in after})
    held.update(2, changed, removed)
    whole = RouteTable()
    whole.replace(2, after)
    assert held == whole


class FakeLeg:
    """What a bridge side needs of its leg when its partner is rerouted."""

    def __init__(self, leg_id: str) -> None:
        self.leg_id = leg_id
        self.asked: list[Any] = []

    def request_keyframe(self, kind: Any, force: bool = False) -> None:
        self.asked.append(kind)

    def switch_source(self) -> None:
        pass


def test_a_delta_that_moves_a_bridged_partner_to_another_next_hop_restarts_its_streams() -> None:
    relay = EdgeRelay("fra-1", 1, b"k")
    relay.set_routes(
        1,
        [
            RouteEntry("sin-1", 3, "vir-1", ("127.0.0.1", 2), 120.0),
            RouteEntry("vir-1", 2, "vir-1", ("127.0.0.1", 2), 80.0),
        ],
    )
    legs = {peer: FakeLeg(f"leg-{peer}") for peer in ("sin-1", "vir-1")}
    for n, (peer, number) in enumerate((("sin-1", 3), ("vir-1", 2))):
        relay.bridges.add(BridgeSide(n + 1, 0, legs[peer], peer, number, 0.0, awaiting_keyframe=False))  # type: ignore[arg-type]
    relay.update_routes(2, [RouteEntry("sin-1", 3, "fra-2", ("127.0.0.1", 4), 150.0)], [])
    assert relay.backbone.routes.by_id["sin-1"].next_hop_edge_id == "fra-2"
    assert relay.backbone.routes.version == 2 and len(relay.backbone.routes.by_id) == 2
    assert legs["sin-1"].asked and not legs["vir-1"].asked  # only the moved partner restarts
    assert relay.bridges.get(1, 0).awaiting_keyframe  # type: ignore[union-attr]
    relay.update_routes(3, [], ["vir-1"])  # gone, not moved: nothing to restart onto
    assert "vir-1" not in relay.backbone.routes.by_id and 2 not in relay.backbone.routes.by_number
    assert not legs["vir-1"].asked
