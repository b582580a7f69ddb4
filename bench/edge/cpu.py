"""CPU time of a process from /proc/PID/stat (utime + stime), the way the benchmark charges each process."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces; the fields after its closing ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_queue_wait_seconds(pid: int) -> float:
    """How long the process's main thread has waited, runnable, for a core (/proc/PID/schedstat, field 2).

    A process under test that waited much of a window was denied the CPU by others on the machine, so
    its loss and latency then say more about the machine than about its code.
    """
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def udp_receive_buffer_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full socket receive buffer (all sockets, this namespace)."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("RcvbufErrors")])
