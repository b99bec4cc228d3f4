"""Helper processes of the harness: load generators and echo responders.

Python load generators run as child processes so their CPU is theirs, not the
harness's, and so eventlet (the peer baseline) never enters the harness. A child
prints ``window-start`` and ``window-end`` lines around its measured window (after
its own warm-up) and its result as the last line of JSON; the harness samples every
process's CPU at those two marks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .cpu import CpuWindow

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def module_command(module: str, *args: str) -> list[str]:
    return [PYTHON, "-m", module, *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_client(cmd: list[str], spec: dict, pids: dict[str, int], timeout: float) -> tuple[dict, dict]:
    """Run a load-generating child; returns (its JSON result, CPU of ``pids`` over its window)."""
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child never blocks on it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=errors, text=True)
    try:
        proc.stdin.write(json.dumps(spec))
        proc.stdin.close()
        window, cpu, last = None, {}, ""
        for line in proc.stdout:
            line = line.strip()
            if line == "window-start":
                window = CpuWindow(pids)
            elif line == "window-end" and window is not None:
                cpu = window.stop()
            elif line:
                last = line
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or not last.startswith("{"):
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {_tail(errors)}")
    return json.loads(last), cpu


def _tail(f) -> str:
    f.seek(0)
    return f.read()[-2000:]


@contextmanager
def helper(cmd: list[str], ready: str = "ready") -> Iterator[subprocess.Popen]:
    """A long-lived helper (an echo responder) that prints ``ready`` once it serves."""
    errors = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        line = proc.stdout.readline().strip()  # until the helper is ready, or dies
        if line != ready:
            proc.kill()
            raise RuntimeError(f"{' '.join(cmd)} did not start: {line} {_tail(errors)}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Marks:
    """The child side of the protocol above."""

    @staticmethod
    def start() -> None:
        print("window-start", flush=True)

    @staticmethod
    def end() -> None:
        print("window-end", flush=True)

    @staticmethod
    def result(result: dict) -> None:
        print(json.dumps(result), flush=True)
