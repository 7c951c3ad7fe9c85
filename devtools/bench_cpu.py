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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
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


def scheduled(pid: int) -> tuple[float, float] | None:
    """(seconds run on a CPU, seconds waited runnable for one) by the main thread of
    ``pid`` (``/proc/<pid>/schedstat``), None when it is gone. The wait is the part of a
    latency no code of ours shortens: other work had the cores."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def _family(process: psutil.Process) -> list[psutil.Process]:
    """A part's top process and every process below it (PostgreSQL's backends, say)."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


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

    def _parts(self) -> list[psutil.Process]:
        """The shop's parts (the launcher's children); the shop stopped under the run
        (an operator's Ctrl-C, a crash) is said as such, not as psutil's traceback."""
        try:
            if self.root.status() == psutil.STATUS_ZOMBIE:  # dead, not yet reaped by us
                raise psutil.NoSuchProcess(self.root.pid)
            return list(self.root.children())
        except psutil.NoSuchProcess:
            raise click.ClickException(
                f"the shop (pid {self.root.pid}) stopped during the run; no figures"
            ) from None

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
        for child in self._parts():
            part = part_name(child)
            for n, process in enumerate(_family(child)):
                add(part, process, n == 0)
        return Snapshot(cpu, rss)

    def niceness(self) -> dict[str, int]:
        """Each part's CPU priority (Unix niceness; ``pizzeria up`` runs the relay and
        the workers nicer than the web: ``PIZZERIA_BACKGROUND_NICE``)."""
        nice: dict[str, int] = {}
        for child in self._parts():
            with contextlib.suppress(psutil.Error):
                nice[part_name(child)] = int(child.nice())
        return nice

    def cpu_by_process(self, part: str) -> dict[int, float]:
        """CPU seconds of each process of ``part`` (its own children included), by pid:
        how the kernel spread the work over a part's replicas."""
        return {
            child.pid: sum(sum(_times(p.pid) or (0.0, 0.0)) for p in _family(child))
            for child in self._parts()
            if part_name(child) == part
        }

    def scheduled(self, part: str) -> tuple[float, float]:
        """Seconds run and seconds waited for a CPU, summed over ``part``'s top
        processes (``scheduled``)."""
        run = wait = 0.0
        for child in self._parts():
            if part_name(child) == part and (times := scheduled(child.pid)):
                run, wait = run + times[0], wait + times[1]
        return run, wait

    def processes(self) -> dict[str, int]:
        """How many processes each part runs (``PIZZERIA_WEB_REPLICAS``,
        ``PIZZERIA_WORKER_REPLICAS``)."""
        return dict(Counter(part_name(child) for child in self._parts()))

    def pause(self, which: Callable[[str], bool]) -> list[psutil.Process]:
        """Stop (SIGSTOP) the top process of every part ``which`` names; the processes
        stopped, for ``resume``."""
        stopped = []
        for child in self._parts():
            if which(part_name(child)):
                with contextlib.suppress(psutil.Error):
                    child.suspend()
                    stopped.append(child)
        return stopped

    @staticmethod
    def resume(stopped: list[psutil.Process]) -> None:
        for process in stopped:
            with contextlib.suppress(psutil.Error):
                process.resume()

    def part_pid(self, part: str) -> int | None:
        for child in self._parts():
            if part_name(child) == part:
                return int(child.pid)
        return None


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds each part spent between two snapshots."""
    parts = set(before.cpu) | set(after.cpu)
    return {p: max(0.0, after.cpu.get(p, 0.0) - before.cpu.get(p, 0.0)) for p in sorted(parts)}


def shares(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each process's part of the CPU spent between two ``cpu_by_process`` looks, in
    percent, largest first; empty for a part of one process (nothing to compare)."""
    used = {pid: cpu - before[pid] for pid, cpu in after.items() if pid in before}
    total = sum(used.values())
    if len(used) < 2 or total <= 0:
        return []
    return sorted((round(100 * cpu / total, 1) for cpu in used.values()), reverse=True)


def process_cpu_seconds() -> float:
    """This process's own CPU (the bench client), for comparison."""
    times = os.times()
    return times.user + times.system


@dataclass
class CpuMeter:
    """The CPU every part of the shop, and the bench itself (``bench client``), spent
    between ``start`` and ``stop``: a ``devtools.bench.Meter``. ``idle_ms_per_s`` is taken
    out of each part (what it burns doing nothing)."""

    tree: ProcessTree | None
    idle_ms_per_s: dict[str, float]
    _before: Snapshot | None = field(default=None, init=False)
    _spent: dict[str, float] = field(default_factory=dict, init=False)
    _client: float = field(default=0.0, init=False)
    _began: float = field(default=0.0, init=False)

    def start(self) -> None:
        self._before = self.tree.snapshot() if self.tree else None
        self._client, self._began = process_cpu_seconds(), time.perf_counter()

    def stop(self) -> None:
        seconds = time.perf_counter() - self._began
        used = spent(self._before, self.tree.snapshot()) if self.tree and self._before else {}
        self._spent = {
            part: max(0.0, cpu * 1000 - self.idle_ms_per_s.get(part, 0.0) * seconds)
            for part, cpu in used.items()
        }
        self._spent["bench client"] = (process_cpu_seconds() - self._client) * 1000

    def per_unit(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit of work, by part, the parts that spent nothing
        above their idle left out."""
        return {
            part: round(ms / max(1, units), 2)
            for part, ms in sorted(self._spent.items(), key=lambda kv: -kv[1])
            if ms / max(1, units) >= 0.005
        }
