"""Machine facts for the benchmarks, read from /proc: CPU of processes and process trees, how
busy all cores were, the cores this process may use, free ports."""

from __future__ import annotations

import contextlib
import os
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # fields from the 3rd (state) on


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process."""
    try:
        fields = _stat(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu_s(root: int) -> float | None:
    """CPU seconds (user + system) of a process, its reaped children and every live
    descendant: uvicorn's worker processes, or a PostgreSQL postmaster's backends."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        f = _stat(root)
        total = sum(int(x) for x in f[11:15])
    except (OSError, ValueError, IndexError):
        return None
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                f = _stat(entry)
                children.setdefault(int(f[1]), []).append((int(entry), int(f[11]) + int(f[12])))
    todo = [root]
    while todo:
        for pid, cpu in children.get(todo.pop(), []):
            total += cpu
            todo.append(pid)
    return total / tick


def parent_pid(pid: int) -> int | None:
    try:
        return int(_stat(pid)[1])
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores since boot."""
    try:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    total = sum(parts[:8])  # guest time is already counted in user
    return total - idle, total


def busy_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of all cores' time that was busy between two ``machine_cpu`` samples."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def cores() -> int:
    return len(usable_cpus())
