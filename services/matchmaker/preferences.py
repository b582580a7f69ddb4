"""A user's matching preferences: who they are and whom they want to meet, checked.

Plain values (no protobuf): the server builds ``Preferences`` with
:func:`checked_preferences`, which refuses bad input with a message naming
the field and the rule. An empty field puts no condition.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from duet.services.matchmaker.errors import BadRequest

GENDERS = ("female", "male", "nonbinary")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
MAX_LANGUAGES = 8
MAX_INTERESTS = 10
MAX_INTEREST_LENGTH = 32
LANGUAGE_RE = re.compile(r"^[a-z]{2}$")


class InvalidPreferences(BadRequest):
    """Preferences that break a rule; the session goes on and nothing is queued."""


class Scope(enum.StrEnum):
    ANYWHERE = "anywhere"
    NEAR = "near"  # same region, or within the matchmaker's near RTT


@dataclass(frozen=True)
class Preferences:
    languages: frozenset[str] = frozenset()  # ISO 639-1 codes the user speaks; empty: any
    interests: frozenset[str] = frozenset()  # lowercased, NFC
    gender: str = ""  # the user's own, "" = unstated
    want_genders: frozenset[str] = frozenset()  # empty: anyone
    age_band: str = ""  # the user's own, "" = unstated
    want_age_bands: frozenset[str] = frozenset()  # empty: anyone
    scope: Scope = Scope.ANYWHERE


NO_PREFERENCES = Preferences()


def _listed(values: Iterable[str], allowed: tuple[str, ...], field: str) -> frozenset[str]:
    out = set()
    for v in values:
        if v not in allowed:
            raise InvalidPreferences(f"{field}: '{v}' is not one of {', '.join(allowed)}")
        out.add(v)
    return frozenset(out)


def _one(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value and value not in allowed:
        raise InvalidPreferences(f"{field}: '{value}' is not one of {', '.join(allowed)} (or empty: unstated)")
    return value


def checked_preferences(
    *,
    languages: Iterable[str] = (),
    interests: Iterable[str] = (),
    gender: str = "",
    want_genders: Iterable[str] = (),
    age_band: str = "",
    want_age_bands: Iterable[str] = (),
    scope: Scope = Scope.ANYWHERE,
    field: str = "preferences",
) -> Preferences:
    """Preferences from loose values, or InvalidPreferences naming the field and the rule."""
    langs = [lang.strip().lower() for lang in languages]
    if len(langs) > MAX_LANGUAGES:
        raise InvalidPreferences(f"{field}.languages: {len(langs)} given; at most {MAX_LANGUAGES}")
    for lang in langs:
        if not LANGUAGE_RE.match(lang):
            raise InvalidPreferences(
                f"{field}.languages: '{lang[:20]}' is not a two-letter ISO 639-1 code such as 'en' or 'pt'"
            )
    found: list[str] = []
    for raw in interests:
        interest = unicodedata.normalize("NFC", raw).strip().lower()
        if not interest:
            raise InvalidPreferences(f"{field}.interests: an interest is empty; leave it out")
        if len(interest) > MAX_INTEREST_LENGTH:
            raise InvalidPreferences(
                f"{field}.interests: '{interest[:20]}...' has {len(interest)} characters; at most {MAX_INTEREST_LENGTH}"
            )
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in interest):
            raise InvalidPreferences(f"{field}.interests: '{interest[:20]}' holds a control character; remove it")
        found.append(interest)
    unique = frozenset(found)
    if len(unique) > MAX_INTERESTS:
        raise InvalidPreferences(f"{field}.interests: {len(unique)} given; at most {MAX_INTERESTS}")
    return Preferences(
        languages=frozenset(langs),
        interests=unique,
        gender=_one(gender, GENDERS, f"{field}.gender"),
        want_genders=_listed(want_genders, GENDERS, f"{field}.want_genders"),
        age_band=_one(age_band, AGE_BANDS, f"{field}.age_band"),
        want_age_bands=_listed(want_age_bands, AGE_BANDS, f"{field}.want_age_bands"),
        scope=scope,
    )
