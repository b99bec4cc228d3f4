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
    """The oldest process whose command name is ``comm`` (e.g. "beam.smp", "ferretdb")."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
            except OSError:
                continue
    return min(found) if found else None


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
