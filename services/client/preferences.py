"""What a user tells the matchmaker about themselves and whom they want to meet.

The SDK's own plain value (the matchmaker checks it and answers an Error
naming the field when a value breaks a rule; see ``Preferences`` in
protos/duet/v1/matchmaker.proto).
"""

from __future__ import annotations

from dataclasses import dataclass

from duet.v1 import matchmaker_pb2

__all__ = ["SCOPES", "MatchPreferences"]

SCOPES = {"anywhere": matchmaker_pb2.SCOPE_ANYWHERE, "near": matchmaker_pb2.SCOPE_NEAR}


@dataclass(frozen=True)
class MatchPreferences:
    languages: tuple[str, ...] = ()  # ISO 639-1 codes the user speaks, e.g. ("en", "pt")
    interests: tuple[str, ...] = ()
    gender: str = ""  # the user's own: "", "female", "male", "nonbinary"
    want_genders: tuple[str, ...] = ()  # empty: anyone
    age_band: str = ""  # the user's own: "", "18-24", "25-34", "35-44", "45-54", "55+"
    want_age_bands: tuple[str, ...] = ()  # empty: anyone
    scope: str = "anywhere"  # or "near": the same region or close by, widened after a while

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")

    def to_proto(self) -> matchmaker_pb2.Preferences:
        return matchmaker_pb2.Preferences(
            languages=self.languages,
            interests=self.interests,
            gender=self.gender,
            want_genders=self.want_genders,
            age_band=self.age_band,
            want_age_bands=self.want_age_bands,
            scope=SCOPES[self.scope],
        )
