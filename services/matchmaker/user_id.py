"""The user-id rule: what a token's subject, a friend's id or a ListCalls filter may be."""

from __future__ import annotations

import re

USER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # \Z: no trailing newline, as $ would allow
