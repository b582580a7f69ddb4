"""A friend call being rung: who calls whom, until when, and the ways a ring ends without a call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duet.services.matchmaker.session_state import ClientSession

# Why a ring ended without a call (RingEnded.reason; matchmaker.proto lists them for clients).
DECLINED = "declined"
NO_ANSWER = "no answer"
CANCELLED = "cancelled"
CALLER_LEFT = "caller left"
FRIEND_OFFLINE = "friend went offline"
NO_LONGER_FRIENDS = "no longer friends"
BUSY = "busy: in another call"
EDGE_LOST = "edge lost"  # either side's edge died: its leg is gone with it


@dataclass(eq=False)
class Ring:
    """One CallFriend waiting for its AnswerCall. A session takes part in at most one ring."""

    request_id: str
    caller: ClientSession
    callee: ClientSession
    created_at: float  # epoch ms: when CallFriend arrived (the call's "queued" stage for both sides)
    expires_at: float  # epoch ms: unanswered by then, it ends with NO_ANSWER

    def other(self, session: ClientSession) -> ClientSession:
        return self.callee if session is self.caller else self.caller

    def involves(self, user_a: str, user_b: str) -> bool:
        return {self.caller.user_id, self.callee.user_id} == {user_a, user_b}
