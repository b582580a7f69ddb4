"""Advisory-lock namespaces of the store: two-key locks ``(namespace, hashtext(name))`` per transaction."""

from __future__ import annotations

# One lock space per user (a ticket opened, a friend pair, a review): "duet" as ASCII.
USER_LOCK_NAMESPACE = 0x64756574
