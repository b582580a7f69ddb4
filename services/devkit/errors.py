"""The one exception type for conditions a user meets and can fix, not bugs.

PostgreSQL binaries that are missing, a data dir made by another major
version, a folder that is not ours, a port already taken, a service that
exits before it is ready: the message says what happened and what to do, and
the ``duet`` command prints it without a traceback and exits non-zero.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class SetupError(RuntimeError):
    """This machine or the local state stops the command; the message says what to do.

    A RuntimeError, so code that caught the RuntimeErrors raised here before keeps working.
    """


__all__ = ["SetupError"]
