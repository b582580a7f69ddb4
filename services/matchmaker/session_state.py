"""What the matchmaker holds per client stream (``ClientSession``) and per live call (``ActiveCall``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from duet.services.matchmaker.clock_sync import ClockSync
from duet.services.matchmaker.events import Outbox, SessionEvent
from duet.services.matchmaker.pool import Ticket
from duet.services.matchmaker.ports import EdgeInfo
from duet.services.matchmaker.preferences import NO_PREFERENCES, Preferences
from duet.services.matchmaker.ring import Ring
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.store.records import CALL_KIND_MATCH


@dataclass(eq=False)
class ActiveCall:
    call_id: str
    bridge_id: int
    sessions: tuple[ClientSession, ClientSession]
    route: tuple[str, ...]
    route_rtt_ms: float
    stages: tuple[dict[str, float], dict[str, float]]
    reported: set[int] = field(default_factory=set)
    observed: set[int] = field(default_factory=set)  # sides whose first frame went to telemetry
    ended: bool = False
    kind: str = CALL_KIND_MATCH

    def side_of(self, session: ClientSession) -> int:
        return 0 if self.sessions[0] is session else 1

    def partner_of(self, session: ClientSession) -> ClientSession:
        return self.sessions[1 - self.side_of(session)]


@dataclass(eq=False)
class ClientSession:
    session_id: str
    user_id: str
    display_name: str
    client_ip: str
    outbox: Outbox
    edge: EdgeInfo | None = None
    region: str = ""
    leg_id: str | None = None
    video: VideoCodecs | None = None  # set with the leg
    ticket: Ticket | None = None
    call: ActiveCall | None = None
    ring: Ring | None = None  # a friend call this session is making or being offered
    preferences: Preferences = NO_PREFERENCES  # the last ones given
    clock: ClockSync = field(default_factory=ClockSync)  # the client's clock offset, from probes on the stream
    closed: bool = False

    def send(self, event: SessionEvent) -> None:
        if not self.closed:
            self.outbox.put_nowait(event)
