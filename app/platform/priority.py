"""CPU priority for parts that share one machine (``pizzeria up``, a single host).

Linux shares the CPU between *autogroups* when they are on
(``/proc/sys/kernel/sched_autogroup_enabled``, the default on most distributions for
processes outside a cgroup of their own): each session is a group, and busy groups get
equal shares whatever their processes' niceness. PostgreSQL starts every backend in a
session of its own, so under load each busy backend weighed as much as the whole shop
(web, relay, workers, sandbox and Valkey, all in ``up``'s session), and the workers'
niceness only ranked them against the web inside that one group. Measured on two cores
while orders were placed back to back with the workers running: the web was runnable
all the time but waited for a CPU 37 % of it.

So each part starts a session (hence a group) of its own; a background part lowers its
group's priority as well as its own; and its database connections pass its niceness on
to the backends that serve them, where those run on this machine as the same user (the
embedded PostgreSQL). Where there are no autogroups (containers, systemd slices) the
plain niceness does the same job, and where none of this is allowed nothing happens.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

#: without ``CAP_SYS_ADMIN`` the kernel takes one group-niceness change per 100 ms
#: (machine-wide) and answers EAGAIN to the rest
RETRY_PAUSE_SECONDS = 0.05


def niceness() -> int:
    """This process's niceness (0 for a part at normal priority)."""
    return os.getpriority(os.PRIO_PROCESS, 0)


def start_own_group(nice: int) -> None:
    """In a new part's process, before it runs (``preexec_fn``): a session and so a
    scheduling group of its own, ``nice`` steps below normal."""
    os.setsid()
    current = os.nice(nice)  # ``up``'s own niceness plus ``nice``
    if current > 0:
        set_group_niceness(os.getpid(), current, attempts=40)


def group_niceness(pid: int) -> int | None:
    """The niceness of ``pid``'s autogroup, None where the kernel has none (or no such
    process): ``/proc/<pid>/autogroup`` reads ``/autogroup-85 nice 10``."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def set_group_niceness(pid: int, nice: int, attempts: int) -> bool:
    """The niceness of ``pid``'s autogroup; False where there are none or it is not ours."""
    path = Path(f"/proc/{pid}/autogroup")
    for attempt in range(attempts):
        try:
            path.write_text(str(nice))
            return True
        except BlockingIOError:  # EAGAIN: another group's change was less than 100 ms ago
            if attempt + 1 < attempts:
                time.sleep(RETRY_PAUSE_SECONDS)
        except OSError:  # no autogroups, no such process, or not allowed
            return False
    return False


def pass_on_to_backend(backend_pid: int) -> None:
    """Give the PostgreSQL backend serving a connection of this (niced) process the same
    niceness, when it is a ``postgres`` process this process may renice. A pid from
    another machine or another pid namespace names no such process here (or some other
    program, which the command-line check leaves alone)."""
    nice = niceness()
    if nice <= 0:
        return
    try:
        if not Path(f"/proc/{backend_pid}/cmdline").read_bytes().startswith(b"postgres"):
            return
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, backend_pid, nice)
    # a connection is opened on demand, in the event loop: wait at most ~0.1 s for the
    # kernel's rate limit, and leave the backend at its group's priority otherwise
    set_group_niceness(backend_pid, nice, attempts=3)
