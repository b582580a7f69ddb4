"""Blocks, reports and moderators' reviews in memory, kept by the PostgreSQL Store's rules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from duet.services.matchmaker.ports import ModerationStore, SafetyStore
from duet.services.store.records import (
    NothingToClear,
    ReportedUserRow,
    ReportRow,
    ReviewRow,
    UnknownUser,
    checked_note,
    checked_pair,
    checked_reason,
)


@dataclass(frozen=True)
class _Report:
    reported: str
    reason: str
    at: float


class InMemorySafetyStore(SafetyStore, ModerationStore):
    """The SafetyStore and ModerationStore ports in dicts; the contract tests hold it to the
    PostgreSQL Store's behaviour.

    ``user_exists`` says which users exist (the Store's foreign keys); by
    default everyone does. ``clock`` gives epoch seconds; it must not go back.
    Every call yields to the event loop once, as a round trip would.
    """

    def __init__(
        self, user_exists: Callable[[str], bool] = lambda user: True, clock: Callable[[], float] = time.time
    ) -> None:
        self.user_exists = user_exists
        self.clock = clock
        self.blocks: set[tuple[str, str]] = set()  # (blocker, blocked)
        self.reports: dict[tuple[str, str], _Report] = {}  # (reporter, call) -> the report
        self.reviews: list[ReviewRow] = []  # oldest first

    def _known(self, *users: str) -> None:
        for user in users:
            if not self.user_exists(user):
                raise UnknownUser(f"names a user that does not exist: '{user}'")

    async def add_block(self, blocker: str, blocked: str, call_id: str) -> None:
        checked_pair(blocker, blocked, "block")
        await asyncio.sleep(0)
        self._known(blocker, blocked)
        self.blocks.add((blocker, blocked))

    async def blocks_of(self, user_id: str) -> set[str]:
        await asyncio.sleep(0)
        return {b for a, b in self.blocks if a == user_id} | {a for a, b in self.blocks if b == user_id}

    async def add_report(self, reporter: str, reported: str, call_id: str, reason: str) -> int:
        checked_pair(reporter, reported, "report")
        checked_reason(reason)
        await asyncio.sleep(0)
        self._known(reporter, reported)
        self.reports.setdefault((reporter, call_id), _Report(reported, reason, self.clock()))
        return self._count(reported)

    async def report_count(self, user_id: str) -> int:
        await asyncio.sleep(0)
        return self._count(user_id)

    # -- moderation ---------------------------------------------------------

    def _last_review(self, user_id: str) -> float:
        return max((r.reviewed_at for r in self.reviews if r.user_id == user_id), default=0.0)

    def _counting(self, user_id: str) -> list[tuple[str, _Report]]:
        since = self._last_review(user_id)
        return [(who, r) for (who, _), r in self.reports.items() if r.reported == user_id and r.at > since]

    def _count(self, user_id: str) -> int:
        return len({who for who, _ in self._counting(user_id)})

    def _row(self, user_id: str) -> ReportedUserRow:
        counting = self._counting(user_id)
        return ReportedUserRow(
            user_id=user_id,
            display_name="",
            reporters=len({who for who, _ in counting}),
            last_report_at=max((r.at for _, r in counting), default=0.0),
            last_review_at=self._last_review(user_id),
        )

    async def held_users(self, threshold: int, limit: int) -> list[ReportedUserRow]:
        await asyncio.sleep(0)
        rows = [self._row(u) for u in {r.reported for r in self.reports.values()}]
        held = [r for r in rows if r.reporters >= threshold and r.reporters > 0]
        held.sort(key=lambda r: (-r.reporters, -r.last_report_at, r.user_id))
        return held[:limit]

    async def reported_user(self, user_id: str) -> ReportedUserRow | None:
        await asyncio.sleep(0)
        return self._row(user_id) if self.user_exists(user_id) else None

    async def reports_about(self, user_id: str, limit: int) -> list[ReportRow]:
        await asyncio.sleep(0)
        since = self._last_review(user_id)
        rows = [
            ReportRow(who, call, r.reason, r.at, r.at > since)
            for (who, call), r in self.reports.items()
            if r.reported == user_id
        ]
        rows.sort(key=lambda r: (-r.created_at, r.reporter))
        return rows[:limit]

    async def reviews_of(self, user_id: str, limit: int) -> list[ReviewRow]:
        await asyncio.sleep(0)
        return [r for r in reversed(self.reviews) if r.user_id == user_id][:limit]

    async def clear_reports(self, user_id: str, reviewer: str, note: str) -> ReviewRow:
        checked_note(note)
        await asyncio.sleep(0)
        if not self.user_exists(user_id):
            raise UnknownUser(f"there is no user '{user_id}'")
        counting = len(self._counting(user_id))
        if counting == 0:
            raise NothingToClear(f"'{user_id}' has no report since their last review: nothing to clear")
        # Strictly after every report so far, as the database's clock_timestamp() is.
        at = max([self.clock(), *(r.at for _, r in self._counting(user_id))])
        review = ReviewRow(user_id, reviewer, note, counting, at)
        self.reviews.append(review)
        return review
