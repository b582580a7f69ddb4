"""A waiting ticket as it is stored for another replica, and back: preferences as JSON.

A ticket row restored by a shard's new owner waits apart from the pool
(``RestoredTicket``) until its user opens a session with a leg there and asks
for a partner again; it then re-enters the pool with its original queued_at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from duet.services.matchmaker.errors import BadRequest
from duet.services.matchmaker.preferences import Preferences, Scope, checked_preferences
from duet.services.store.records import TicketRow


def preferences_json(p: Preferences) -> dict[str, Any]:
    """``p`` as a JSON object (lists sorted, so equal preferences store equal)."""
    return {
        "languages": sorted(p.languages),
        "interests": sorted(p.interests),
        "gender": p.gender,
        "want_genders": sorted(p.want_genders),
        "age_band": p.age_band,
        "want_age_bands": sorted(p.want_age_bands),
        "scope": p.scope.value,
    }


def preferences_from_json(data: dict[str, Any]) -> Preferences:
    """Stored preferences, checked again (a row written by an older or broken replica raises BadRequest)."""
    scope = data.get("scope", Scope.ANYWHERE.value)
    if scope not in {s.value for s in Scope}:
        raise BadRequest(f"stored preferences: scope {scope!r} is not one of {', '.join(s.value for s in Scope)}")
    return checked_preferences(
        languages=list(data.get("languages", ())),
        interests=list(data.get("interests", ())),
        gender=str(data.get("gender", "")),
        want_genders=list(data.get("want_genders", ())),
        age_band=str(data.get("age_band", "")),
        want_age_bands=list(data.get("want_age_bands", ())),
        scope=Scope(scope),
        field="stored preferences",
    )


@dataclass(frozen=True)
class RestoredTicket:
    """An open ticket loaded from the store, waiting for its user to come back."""

    ticket_id: str
    user_id: str
    shard: str
    region: str
    queued_at: float  # epoch ms, as the pool keeps it
    preferences: Preferences

    @classmethod
    def of(cls, row: TicketRow) -> RestoredTicket:
        try:
            prefs = preferences_from_json(row.preferences)
        except BadRequest:
            prefs = Preferences()  # unreadable: the user states them again with their next FindPartner
        return cls(row.ticket_id, row.user_id, row.shard, row.region, row.queued_at * 1000, prefs)
