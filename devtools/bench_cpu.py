"""CPU time of every process of a running shop, per part, read from ``/proc``.

The shop started by ``pizzeria up`` is one process tree: ``up`` itself, the web server,
the relay, one arq worker per queue, the sandbox partners and (when embedded) PostgreSQL
with its backends and Valkey. A part's CPU is the ``utime + stime`` of each of its live
processes plus ``cutime + cstime`` (the CPU of children it has already reaped: a
PostgreSQL backend that ended during the run still counts, through the postmaster).
Two snapshots, before and after, give the CPU each part spent in between.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

TICKS = os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> tuple[float, float] | None:
    """(own CPU, reaped children's CPU) of ``pid`` in seconds, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / TICKS, (cutime + cstime) / TICKS


def part_name(process: psutil.Process) -> str:
    """The shop part a direct child of ``up`` is: ``web``, ``relay``, ``worker-<queue>``,
    ``sandbox``, ``postgres`` or ``valkey``."""
    try:
        cmdline = process.cmdline()
        name = process.name()
    except psutil.Error:
        return "gone"
    if "app.cli" in cmdline:
        args = cmdline[cmdline.index("app.cli") + 1 :]
        if args[:1] == ["serve"]:
            return "web"
        if args[:1] == ["worker"] and len(args) > 1:
            return f"worker-{args[1]}"
        return args[0] if args else "python"
    joined = " ".join([name, *cmdline[:1]])
    for known in ("postgres", "valkey", "redis"):
        if known in joined:
            return "valkey" if known == "redis" else known
    return str(name)


@dataclass
class Snapshot:
    """CPU seconds per part at one moment, and resident memory per part."""

    cpu: dict[str, float]
    rss: dict[str, int]


class ProcessTree:
    """The processes below ``root`` (``pizzeria up``), grouped by part."""

    def __init__(self, root: int) -> None:
        self.root = psutil.Process(root)

    def snapshot(self) -> Snapshot:
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}

        def add(part: str, process: psutil.Process, top: bool) -> None:
            times = _times(process.pid)
            if times is None:
                return
            cpu[part] = cpu.get(part, 0.0) + times[0] + times[1]
            if top:
                with contextlib.suppress(psutil.Error):
                    rss[part] = rss.get(part, 0) + process.memory_info().rss

        add("launcher", self.root, True)
        for child in self.root.children():
            part = part_name(child)
            add(part, child, True)
            try:
                below = child.children(recursive=True)
            except psutil.Error:
                below = []
            for process in below:
                add(part, process, False)
        return Snapshot(cpu, rss)

    def niceness(self) -> dict[str, int]:
        """Each part's CPU priority (Unix niceness; ``pizzeria up`` runs the relay and
        the workers nicer than the web: ``PIZZERIA_BACKGROUND_NICE``)."""
        nice: dict[str, int] = {}
        for child in self.root.children():
            with contextlib.suppress(psutil.Error):
                nice[part_name(child)] = int(child.nice())
        return nice

    def part_pid(self, part: str) -> int | None:
        for child in self.root.children():
            if part_name(child) == part:
                return int(child.pid)
        return None


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds each part spent between two snapshots."""
    parts = set(before.cpu) | set(after.cpu)
    return {p: max(0.0, after.cpu.get(p, 0.0) - before.cpu.get(p, 0.0)) for p in sorted(parts)}


def process_cpu_seconds() -> float:
    """This process's own CPU (the bench client), for comparison."""
    times = os.times()
    return times.user + times.system
