"""The Moderation RPCs (protos/duet/v1/moderation.proto): who is held for review, and clearing a hold.

Served by the matchmaker process beside Matchmaker; the access policy admits
ops tokens only (ops-read to look, ops-admin to clear). The review names the
verified token's holder.
"""

from __future__ import annotations

import logging

import grpc

from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.ports import ModerationStore
from duet.services.matchmaker.user_id import USER_ID_RE
from duet.services.rpc.auth import current_principal
from duet.services.rpc.errors import map_errors
from duet.services.store.records import NothingToClear, ReportedUserRow, ReviewRow, UnknownUser, checked_note
from duet.v1 import moderation_pb2, moderation_pb2_grpc

logger = logging.getLogger("duet.matchmaker.moderation")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class _BadRequest(ValueError):
    pass


STATUS: dict[type[Exception], grpc.StatusCode] = {
    _BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    UnknownUser: grpc.StatusCode.NOT_FOUND,
    NothingToClear: grpc.StatusCode.FAILED_PRECONDITION,
}


def _limit(limit: int) -> int:
    if limit > MAX_LIMIT:
        raise _BadRequest(f"limit must be 0 (the default, {DEFAULT_LIMIT}) to {MAX_LIMIT}, got {limit}")
    return limit or DEFAULT_LIMIT


def _user_id(user_id: str) -> str:
    if not user_id:
        raise _BadRequest("user_id is required: the reported user's id (from ListHeld)")
    if not USER_ID_RE.match(user_id):
        raise _BadRequest("user_id must be 1-64 characters of letters, digits, '_', '.' or '-'")
    return user_id


def held_user(row: ReportedUserRow) -> moderation_pb2.HeldUser:
    return moderation_pb2.HeldUser(
        user_id=row.user_id,
        display_name=row.display_name,
        reporters=row.reporters,
        last_report_at=row.last_report_at * 1000,
        last_review_at=row.last_review_at * 1000,
    )


def review_message(row: ReviewRow) -> moderation_pb2.Review:
    return moderation_pb2.Review(
        reviewer=row.reviewer, reviewed_at=row.reviewed_at * 1000, note=row.note, reports_cleared=row.reports_cleared
    )


class ModerationServicer(moderation_pb2_grpc.ModerationServicer):
    def __init__(self, store: ModerationStore, mm: Matchmaker) -> None:
        self.store = store
        self.mm = mm

    @map_errors(STATUS)
    async def ListHeld(
        self, request: moderation_pb2.ListHeldRequest, context: grpc.aio.ServicerContext
    ) -> moderation_pb2.ListHeldResponse:
        threshold = self.mm.config.review_threshold
        rows = await self.store.held_users(threshold, _limit(request.limit))
        return moderation_pb2.ListHeldResponse(users=[held_user(r) for r in rows], review_threshold=threshold)

    @map_errors(STATUS)
    async def ListReports(
        self, request: moderation_pb2.ListReportsRequest, context: grpc.aio.ServicerContext
    ) -> moderation_pb2.ListReportsResponse:
        user_id, limit = _user_id(request.user_id), _limit(request.limit)
        user = await self.store.reported_user(user_id)
        if user is None:
            raise UnknownUser(f"there is no user '{user_id}'")
        reports = await self.store.reports_about(user_id, limit)
        reviews = await self.store.reviews_of(user_id, limit)
        return moderation_pb2.ListReportsResponse(
            user=held_user(user),
            held=user.reporters >= self.mm.config.review_threshold,
            reports=[
                moderation_pb2.UserReport(
                    reporter=r.reporter,
                    call_id=r.call_id,
                    reason=r.reason,
                    created_at=r.created_at * 1000,
                    counts=r.counts,
                )
                for r in reports
            ],
            reviews=[review_message(r) for r in reviews],
        )

    @map_errors(STATUS)
    async def ClearHold(
        self, request: moderation_pb2.ClearHoldRequest, context: grpc.aio.ServicerContext
    ) -> moderation_pb2.ClearHoldResponse:
        user_id = _user_id(request.user_id)
        try:
            note = checked_note(request.note)
        except ValueError as exc:
            raise _BadRequest(f"note: {exc}") from None
        principal = current_principal()
        reviewer = principal.name if principal is not None else "unknown"
        review = await self.store.clear_reports(user_id, reviewer, note)
        await self.mm.reviewed(user_id)
        logger.info("%s cleared %s (%d reports): %s", reviewer, user_id, review.reports_cleared, note or "no note")
        return moderation_pb2.ClearHoldResponse(review=review_message(review))
