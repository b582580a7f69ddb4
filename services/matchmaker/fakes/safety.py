"""Blocks and reports in memory, kept by the PostgreSQL Store's rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from duet.services.matchmaker.ports import SafetyStore
from duet.services.store.records import UnknownUser, checked_pair, checked_reason


class InMemorySafetyStore(SafetyStore):
    """The SafetyStore port in dicts; the contract test holds it to the PostgreSQL Store's behaviour.

    ``user_exists`` says which users exist (the Store's foreign keys); by
    default everyone does. Every call yields to the event loop once, as a
    round trip would.
    """

    def __init__(self, user_exists: Callable[[str], bool] = lambda user: True) -> None:
        self.user_exists = user_exists
        self.blocks: set[tuple[str, str]] = set()  # (blocker, blocked)
        self.reports: dict[tuple[str, str], tuple[str, str]] = {}  # (reporter, call) -> (reported, reason)

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
        self.reports.setdefault((reporter, call_id), (reported, reason))
        return self._count(reported)

    async def report_count(self, user_id: str) -> int:
        await asyncio.sleep(0)
        return self._count(user_id)

    def _count(self, user_id: str) -> int:
        return len({reporter for (reporter, _), (reported, _) in self.reports.items() if reported == user_id})
