"""Whom a user met lately, from the ``calls`` table (indexes: migration 0010).

The matchmaker loads it when a user opens a session, so the rematch rules
(the last N partners, the no-rematch window) hold across replicas and
restarts. Only matches count (``kind = 'match'``), whatever became of the
call: a pair whose set-up failed was still paired. A part of ``Store`` (a
base class of it), over the same pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from duet.services.store.records import CALL_KIND_MATCH


@dataclass(frozen=True)
class PastMeeting:
    """One earlier match of a user: with whom, and how long ago (seconds, by the store's clock).

    An age rather than a time, so a replica whose clock differs from the database's still
    measures the rematch window right.
    """

    partner: str
    seconds_ago: float


def checked_meeting_query(recent: int, window_s: float) -> None:
    if recent < 0:
        raise ValueError(f"recent must be 0 or more, got {recent}")
    if not window_s >= 0:
        raise ValueError(f"window_s must be 0 or more seconds, got {window_s}")


# $1 user, $2 how many of the latest, $3 window in seconds, $4 the match kind. Each side's latest $2
# come off its (user, created_at) index; the window's meetings are few by nature.
_MEETINGS = """
WITH latest AS (
    (SELECT user_b AS partner, created_at FROM calls
     WHERE user_a = $1 AND kind = $4 ORDER BY created_at DESC LIMIT $2)
    UNION ALL
    (SELECT user_a AS partner, created_at FROM calls
     WHERE user_b = $1 AND kind = $4 ORDER BY created_at DESC LIMIT $2)
    ORDER BY created_at DESC LIMIT $2
), windowed AS (
    SELECT CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS partner, created_at FROM calls
    WHERE (user_a = $1 OR user_b = $1) AND kind = $4 AND $3 > 0
      AND created_at > now() - make_interval(secs => $3)
)
SELECT partner, extract(epoch FROM now() - max(created_at))::float8 AS seconds_ago
FROM (SELECT * FROM latest UNION ALL SELECT * FROM windowed) m
GROUP BY partner
ORDER BY seconds_ago
"""


class MeetingQueries:
    """The MatchStore port's ``recent_meetings``; ``pool`` is the Store's."""

    pool: asyncpg.Pool

    async def recent_meetings(self, user_id: str, *, recent: int, window_s: float) -> list[PastMeeting]:
        """The partners of ``user_id``'s last ``recent`` matches and of every match within ``window_s``
        seconds, each once with its latest meeting, newest first."""
        checked_meeting_query(recent, window_s)
        if not recent and not window_s:
            return []
        rows = await self.pool.fetch(_MEETINGS, user_id, recent, float(window_s), CALL_KIND_MATCH)
        return [PastMeeting(r["partner"], max(0.0, r["seconds_ago"])) for r in rows]
