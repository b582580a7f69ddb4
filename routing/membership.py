"""Edge membership: which edges are alive, from their heartbeats.

An edge is watched from its first heartbeat: silent for longer than
``timeout_s`` it is out (routed as if DOWN, its declared state untouched);
its next heartbeat or registration brings it back. Edges that never heartbeat
(processes older than heartbeats, hand-registered test edges) are never timed
out, so adding heartbeats broke nobody.

Pure and clock-free: the caller passes ``now`` (monotonic seconds), so the
timer is tested with a fake clock and the service sweeps on its own schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Edges heartbeat every 0.5 s: 2 s is four missed beats. With a sweep every
# 0.25 s an edge is out at most 2.25 s after its last heartbeat (goal: 3 s).
HEARTBEAT_INTERVAL_S = 0.5
SILENCE_TIMEOUT_S = 2.0
SWEEP_INTERVAL_S = 0.25


@dataclass(frozen=True)
class MembershipChange:
    edge_id: str
    alive: bool
    reason: str


@dataclass
class Membership:
    """Last heartbeat per edge and the set of edges silent past the timeout."""

    timeout_s: float = SILENCE_TIMEOUT_S
    _last_beat: dict[str, float] = field(default_factory=dict)
    _silent: set[str] = field(default_factory=set)

    @property
    def silent(self) -> frozenset[str]:
        return frozenset(self._silent)

    def is_alive(self, edge_id: str) -> bool:
        return edge_id not in self._silent

    def heard_within(self, edge_id: str, seconds: float, now: float) -> bool:
        """Whether ``edge_id`` heartbeated in the last ``seconds`` (True for an edge never watched)."""
        last = self._last_beat.get(edge_id)
        return last is None or now - last <= seconds

    def beat(self, edge_id: str, now: float, *, why: str = "heartbeat again") -> MembershipChange | None:
        """A heartbeat (or registration) at ``now``; the change when a silent edge came back."""
        self._last_beat[edge_id] = now
        if edge_id in self._silent:
            self._silent.discard(edge_id)
            return MembershipChange(edge_id, True, why)
        return None

    def sweep(self, now: float) -> list[MembershipChange]:
        """Edges whose last heartbeat is older than the timeout and were not yet out."""
        out = []
        for edge_id, last in self._last_beat.items():
            if edge_id not in self._silent and now - last > self.timeout_s:
                self._silent.add(edge_id)
                out.append(MembershipChange(edge_id, False, f"no heartbeat for {now - last:.1f} s"))
        return out

    def forget(self, edge_id: str) -> None:
        """The edge left the topology: stop watching it."""
        self._last_beat.pop(edge_id, None)
        self._silent.discard(edge_id)
