"""CPU and memory of a server's processes (its workers, its Redis) and of the load generator."""

from __future__ import annotations

import msgspec
import psutil


class Usage(msgspec.Struct, frozen=True):
    cpu_seconds: float
    rss_bytes: int
    processes: int


class ProcessSampler:
    """Samples processes and all their descendants (uvicorn workers) by pid, as one server.

    More than one pid is for a server made of separate processes: Parley and its Redis.

    CPU is user + system time of the live processes; a worker that dies takes its time with
    it, which only happens when something already went wrong. RSS is summed, so pages shared
    between forked workers count once per worker: an upper bound.
    """

    def __init__(self, *pids: int, include_children: bool = True) -> None:
        self._roots = [psutil.Process(pid) for pid in pids]
        self._include_children = include_children

    def sample(self) -> Usage:
        cpu = 0.0
        rss = 0
        processes = self._tree()
        alive = 0
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu += times.user + times.system
                    rss += process.memory_info().rss
                alive += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return Usage(cpu_seconds=cpu, rss_bytes=rss, processes=alive)

    def _tree(self) -> list[psutil.Process]:
        if not self._include_children:
            return self._roots
        processes: list[psutil.Process] = []
        for root in self._roots:
            try:
                processes += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return processes


def machine_busy_seconds() -> float:
    """CPU time of every process on the machine, summed over cores.

    Interrupt time is left out: on loopback much of it is our own traffic, which would
    otherwise show up as load from other processes.
    """
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + getattr(times, "steal", 0.0))
