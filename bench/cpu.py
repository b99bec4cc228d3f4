"""CPU of each process over a window, in % of one core, from /proc/<pid>/stat.

A reader of the table should see what saturates: on this 2-core machine the gateway,
the services, RabbitMQ, FerretDB, the load tool and the harness all share two cores.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of every thread of ``pid`` so far (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces: the fields that follow start after its ")"
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def find_pid(comm: str) -> int | None:
    """The oldest process whose command name starts with ``comm`` (e.g. "beam.smp",
    "ferretdb": the binary is ferretdb-v1.24.2-r<n>, and the kernel keeps 15 characters)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith(comm):
                    found.append(int(entry.name))
            except OSError:
                continue
    return min(found) if found else None


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` of this machine (from /proc/net/tcp{,6} and the
    processes' sockets), None if none or not visible: with several FerretDBs or brokers on
    the machine (a private stack beside a shared one), the one a URL names."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:   # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:
            continue
    return None


class CpuWindow:
    """``CpuWindow(pids)`` starts the window; ``stop()`` returns {name: % of one core}."""

    def __init__(self, pids: dict[str, int]):
        self.pids = dict(pids)
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        out = {}
        for name, pid in self.pids.items():
            end, start = cpu_seconds(pid), self.start[name]
            if end is not None and start is not None:
                out[name] = round((end - start) / wall * 100, 1)
        self.wall = wall
        return out


def settle(pids: dict[str, int], busy_pct: float = 25.0, sample_s: float = 0.5, timeout: float = 15.0) -> float:
    """Wait until ``pids`` together use less than ``busy_pct`` of a core (the previous
    scenario's backlog is drained: requests a load tool gave up on still run in the
    services), at most ``timeout`` s. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        window = CpuWindow(pids)
        time.sleep(sample_s)
        if sum(window.stop().values()) < busy_pct:
            break
    return round(time.monotonic() - t0, 1)
