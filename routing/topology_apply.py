"""The rules of changing a live topology: what an applied file may change, and what carries over.

A declared topology replaces the running one, except for what the running
service learned itself: the addresses edges registered stay with their edge
ids (addresses written in a file are ignored). Two changes are refused because they would break calls or the backbone
wire at once rather than let them end naturally:

* changing a declared edge's ``number``: the edge process stamps it on every
  backbone datagram and learned it when it registered;
* removing an edge that is registered and not DOWN: its calls would lose
  their routes mid-call. Drain it first (``duet topology drain``), then take
  it down or remove it once its calls have ended.
"""

from __future__ import annotations

from dataclasses import replace

from duet.routing.topology import EdgeState, Topology

__all__ = ["ChangeRefused", "plan_apply"]


class ChangeRefused(RuntimeError):
    """A change that is valid on its own but may not be made to the running topology; ``reasons`` lists why."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("change refused: " + "; ".join(reasons))


def plan_apply(current: Topology, declared: Topology) -> Topology:
    """The topology that applying ``declared`` to ``current`` produces (version bumped when anything changes).

    Raises ``ChangeRefused`` listing every rule the change breaks.
    """
    reasons = []
    for old in current.edges:
        new = declared.find_edge(old.edge_id)
        if new is None:
            if old.registered and old.state is not EdgeState.DOWN:
                reasons.append(
                    f"edge {old.edge_id} is registered and {old.state.value}: drain it and wait for its calls "
                    "to end, or set its state to down, before removing it"
                )
        elif new.number != old.number:
            reasons.append(
                f"edge {old.edge_id}: number {old.number} -> {new.number}: an edge's backbone number is fixed "
                "while it is declared (remove it in one change and add it back in another)"
            )
    if reasons:
        raise ChangeRefused(reasons)
    edges = []
    for e in declared.edges:
        # Addresses are learned from registrations, never declared: a new edge starts unregistered.
        known = current.find_edge(e.edge_id)
        edges.append(
            replace(
                e,
                control_address=known.control_address if known else "",
                backbone_address=known.backbone_address if known else "",
                media_host=known.media_host if known else "",
            )
        )
    merged = Topology(declared.regions, tuple(edges), declared.links, current.version)
    if merged == current:
        return current
    return merged.with_version(current.version + 1)
