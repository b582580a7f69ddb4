"""Why the matchmaker refuses a request: one exception per kind, message for the client.

The kind decides how the caller is told (the gRPC server maps each to a
status code); the message says what to do about it.
"""

from __future__ import annotations


class MatchmakerError(Exception):
    """A request the matchmaker refuses; a session that raises it ends."""


class BadRequest(MatchmakerError):
    """The request itself is malformed (a bad user id, an unusable offer)."""


class WrongState(MatchmakerError):
    """Well-formed, but not allowed in the session's current state (find_partner before the offer)."""


class NotFound(MatchmakerError):
    """Names a call (or other record) that does not exist."""


class Forbidden(MatchmakerError):
    """Names something that exists but belongs to someone else."""


class Unavailable(MatchmakerError):
    """A service the request depends on (routing, an edge) is unreachable or failing; try again later."""


class RateLimited(MatchmakerError):
    """Too many find/next requests in a short time; the message says when to try again."""


class HeldForReview(MatchmakerError):
    """The user was reported by enough people that they are not matched until a moderator clears them."""
