"""The display-name rule: what a user may show partners as their name.

Names are NFC-normalised first (so "é" typed two ways is one name of one
character), then must be 1-40 characters with no control characters and no
bidirectional overrides or isolates, which could make a name render as
something else (or reverse the text after it).
"""

from __future__ import annotations

import unicodedata

from duet.services.matchmaker.errors import BadRequest

MAX_DISPLAY_NAME = 40
# Embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def checked_display_name(raw: str, field: str = "hello.display_name") -> str:
    """The name as stored and shown (NFC), or BadRequest saying what to change."""
    name = unicodedata.normalize("NFC", raw)
    if not name or not name.strip():
        raise BadRequest(f"{field} is empty: give a name of 1-{MAX_DISPLAY_NAME} characters (or leave it unset)")
    if len(name) > MAX_DISPLAY_NAME:
        raise BadRequest(f"{field} has {len(name)} characters; at most {MAX_DISPLAY_NAME} are allowed")
    for i, ch in enumerate(name):
        if ch in BIDI_CONTROLS:
            raise BadRequest(
                f"{field} holds a text-direction control character (U+{ord(ch):04X}) at position {i + 1}; remove it"
            )
        if unicodedata.category(ch) in ("Cc", "Cf") and ch not in ("\u200d", "\u200c"):
            # Cf also holds other invisible formatting; ZWJ/ZWNJ stay (emoji sequences, some scripts need them).
            raise BadRequest(
                f"{field} holds an invisible or control character (U+{ord(ch):04X}) at position {i + 1}; remove it"
            )
    return name
