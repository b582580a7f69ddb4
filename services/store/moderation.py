"""Moderation in PostgreSQL: who is held for review, the reports about a user, and reviews (migration 0009).

A part of ``Store`` (a base class of it), over the same pool. A user's
standing counts the distinct reporters since their latest review, so a
review clears without deleting a report.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from duet.services.store.locks import USER_LOCK_NAMESPACE
from duet.services.store.records import (
    NothingToClear,
    ReportedUserRow,
    ReportRow,
    ReviewRow,
    UnknownUser,
    checked_note,
)

# Distinct reporters of $1 since their last review.
COUNTING_REPORTERS = (
    "SELECT count(DISTINCT reporter) FROM reports WHERE reported = $1 AND created_at > "
    "coalesce((SELECT max(reviewed_at) FROM reviews WHERE user_id = $1), '-infinity')"
)
# Per reported user, what counts since their last review (GROUP BY open for a HAVING).
_REPORTED_USERS = (
    "SELECT r.reported AS user_id, u.display_name, count(DISTINCT r.reporter) AS reporters, "
    "max(r.created_at) AS last_report_at, lr.at AS last_review_at "
    "FROM reports r JOIN users u ON u.user_id = r.reported "
    "LEFT JOIN (SELECT user_id, max(reviewed_at) AS at FROM reviews GROUP BY user_id) lr ON lr.user_id = r.reported "
    "WHERE lr.at IS NULL OR r.created_at > lr.at "
    "GROUP BY r.reported, u.display_name, lr.at"
)


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def _reported_user(r: asyncpg.Record) -> ReportedUserRow:
    return ReportedUserRow(
        user_id=r["user_id"],
        display_name=r["display_name"],
        reporters=r["reporters"],
        last_report_at=_epoch(r["last_report_at"]),
        last_review_at=_epoch(r["last_review_at"]),
    )


def _review(r: asyncpg.Record) -> ReviewRow:
    return ReviewRow(r["user_id"], r["reviewer"], r["note"], r["reports_cleared"], r["reviewed_at"].timestamp())


class ModerationQueries:
    """The ModerationStore port's queries; ``pool`` is the Store's."""

    pool: asyncpg.Pool

    async def held_users(self, threshold: int, limit: int) -> list[ReportedUserRow]:
        """Users with at least ``threshold`` distinct reporters since their last review, most reported first."""
        rows = await self.pool.fetch(
            f"{_REPORTED_USERS} HAVING count(DISTINCT r.reporter) >= $1 "
            "ORDER BY reporters DESC, last_report_at DESC, r.reported LIMIT $2",
            threshold,
            limit,
        )
        return [_reported_user(r) for r in rows]

    async def reported_user(self, user_id: str) -> ReportedUserRow | None:
        """The user with what counts against them now; None when there is no such user."""
        row = await self.pool.fetchrow(
            "SELECT u.user_id, u.display_name, "
            f"({COUNTING_REPORTERS.replace('$1', 'u.user_id')}) AS reporters, "
            "(SELECT max(created_at) FROM reports WHERE reported = u.user_id AND created_at > "
            "coalesce((SELECT max(reviewed_at) FROM reviews WHERE user_id = u.user_id), '-infinity')) "
            "AS last_report_at, "
            "(SELECT max(reviewed_at) FROM reviews WHERE user_id = u.user_id) AS last_review_at "
            "FROM users u WHERE u.user_id = $1",
            user_id,
        )
        return None if row is None else _reported_user(row)

    async def reports_about(self, user_id: str, limit: int) -> list[ReportRow]:
        """The reports about ``user_id``, newest first, each with whether it counts now."""
        rows = await self.pool.fetch(
            "SELECT reporter, call_id, reason, created_at, created_at > coalesce("
            "(SELECT max(reviewed_at) FROM reviews WHERE user_id = $1), '-infinity') AS counts "
            "FROM reports WHERE reported = $1 ORDER BY created_at DESC, reporter LIMIT $2",
            user_id,
            limit,
        )
        return [
            ReportRow(r["reporter"], r["call_id"], r["reason"], r["created_at"].timestamp(), r["counts"]) for r in rows
        ]

    async def reviews_of(self, user_id: str, limit: int) -> list[ReviewRow]:
        """The user's reviews, newest first."""
        rows = await self.pool.fetch(
            "SELECT user_id, reviewer, note, reports_cleared, reviewed_at FROM reviews WHERE user_id = $1 "
            "ORDER BY reviewed_at DESC, review_id DESC LIMIT $2",
            user_id,
            limit,
        )
        return [_review(r) for r in rows]

    async def clear_reports(self, user_id: str, reviewer: str, note: str) -> ReviewRow:
        """Record a review: the reports about ``user_id`` so far stop counting.

        Raises UnknownUser for no such user and NothingToClear when no report
        counts now; either way nothing is written.
        """
        checked_note(note)
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise reviews of one user: two moderators clearing at once record one review.
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", USER_LOCK_NAMESPACE, user_id)
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)", user_id):
                raise UnknownUser(f"there is no user '{user_id}'")
            counting: int = await conn.fetchval(
                "SELECT count(*) FROM reports WHERE reported = $1 AND created_at > "
                "coalesce((SELECT max(reviewed_at) FROM reviews WHERE user_id = $1), '-infinity')",
                user_id,
            )
            if counting == 0:
                raise NothingToClear(f"'{user_id}' has no report since their last review: nothing to clear")
            row = await conn.fetchrow(
                "INSERT INTO reviews (user_id, reviewer, note, reports_cleared) VALUES ($1, $2, $3, $4) "
                "RETURNING user_id, reviewer, note, reports_cleared, reviewed_at",
                user_id,
                reviewer,
                note,
                counting,
            )
        return _review(row)
