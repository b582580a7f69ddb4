"""Hard filter, both ways: two users share a language, unless either gave none.

The pool indexes tickets by language in the same terms (a ticket with no
language sits in the "any" bucket), so it never looks at a ticket this rule
would refuse for language.
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import PairContext
from duet.services.matchmaker.ticket import Ticket


def share_a_language(a: frozenset[str], b: frozenset[str]) -> bool:
    return not a or not b or not a.isdisjoint(b)


class LanguageRule:
    name = "language"

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        return share_a_language(a.preferences.languages, b.preferences.languages)
