"""When a datagram reached its receiver's socket, by the kernel's clock.

The load process sends and receives every leg of every call, so a packet can
sit in a receiving client's socket while that process is busy sending; timed
when the process reads it, the packet's latency would include that wait, which
is the benchmark's and not the path's. Linux records when each datagram
arrived (``SIOCGSTAMPNS``, socket(7)): asked right after the datagram was
read, it answers for that datagram, at the cost of one ioctl (~1 µs here).
The time is CLOCK_REALTIME, so senders stamp with ``time.time_ns()``.
"""

from __future__ import annotations

import fcntl
import struct

SIOCGSTAMPNS = 0x8907  # linux/sockios.h: the last received datagram's arrival, as a struct timespec
_TIMESPEC = struct.Struct("@qq")
_EMPTY = bytes(_TIMESPEC.size)


def enable(fd: int) -> bool:
    """Start recording arrival times on this socket; False where the kernel cannot (then use the read time).

    The first ask turns recording on and, with nothing received yet, fails with ENOENT. When it is the
    first such socket on the machine, the kernel starts stamping a moment later (from a work queue);
    a datagram that arrives before then is stamped when it is asked about, i.e. as late as its read.
    """
    try:
        fcntl.ioctl(fd, SIOCGSTAMPNS, _EMPTY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def last_arrival_ns(fd: int) -> int | None:
    """When the datagram last read from this socket arrived (ns, CLOCK_REALTIME); None if unknown."""
    try:
        seconds, nanoseconds = _TIMESPEC.unpack(fcntl.ioctl(fd, SIOCGSTAMPNS, _EMPTY))
    except OSError:
        return None
    return int(seconds) * 1_000_000_000 + int(nanoseconds)
