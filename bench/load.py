"""Closed-loop gRPC load: ghz (a Go load tool, built into tools/bin by `make bench`) or,
without it, bench.pyload (a grpc.aio client in a child process whose CPU is reported).

A :class:`GrpcCall` is tool-neutral: the method, the .proto that declares it and the
request data in ghz's JSON form (a list is used round robin; ``{{.RequestNumber}}`` and
``{{newUUID}}`` make every request unique).
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import credentials
from .cpu import CpuWindow
from .procs import ROOT, module_command, run_client

GHZ = ROOT / "tools" / "bin" / "ghz"
GHZ_VERSION = "v0.93.0"   # what `make bench` builds (the Makefile's tools/bin/ghz)


@dataclass
class GrpcCall:
    method: str                      # "crm.v1.ContactsService.GetContact"
    proto: str                       # "crm/v1/contacts.proto", under proto/
    data: list | dict = field(default_factory=dict)
    addr: str = "127.0.0.1:50051"


def pick_tool(requested: str = "auto") -> str:
    if requested == "auto":
        return "ghz" if GHZ.exists() else "python"
    if requested == "ghz" and not GHZ.exists():
        raise SystemExit(f"{GHZ} is missing: `make tools/bin/ghz` builds it")
    return requested


def run(call: GrpcCall, in_flight: int, duration: float, warmup: float, tool: str,
        pids: dict[str, int]) -> tuple[dict, dict]:
    """Load ``call`` with ``in_flight`` requests outstanding for ``duration`` s.

    Returns (summary as in bench.stats plus ``load_cpu``: the load generator's CPU in
    % of one core, cpu of ``pids`` over the measured window)."""
    if tool == "ghz":
        if warmup > 0:
            _ghz(call, in_flight, warmup)
        window = CpuWindow(pids)
        result, load_cpu_s, wall = _ghz(call, in_flight, duration)
        cpu = window.stop()
        result["load_cpu"] = round(load_cpu_s / wall * 100, 1)
        return result, cpu
    spec = {"addr": call.addr, "method": call.method, "data": call.data, "in_flight": in_flight,
            "duration": duration, "warmup": warmup}
    return run_client(module_command("bench.pyload"), spec, pids, timeout=duration + warmup + 60)


def _ghz(call: GrpcCall, in_flight: int, duration: float) -> tuple[dict, float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ghz-") as tmp:
        data, out = os.path.join(tmp, "data.json"), os.path.join(tmp, "out.json")
        with open(data, "w") as f:
            json.dump(call.data, f)
        cmd = [str(GHZ), "--insecure", *credentials.ghz_metadata(), "--protoset", protoset(call.proto),
               "--call", call.method, "-D", data, "-c", str(in_flight), "-z", f"{duration}s",
               # requests still in flight when the time is up are neither successes nor errors
               "--duration-stop", "ignore", "-t", "10s", "--format", "json", "-o", out, call.addr]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # wait4, not wait: the rusage of the reaped child is ghz's own CPU time
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"ghz {call.method} failed: {proc.stderr.read().decode()[-2000:]}")
        with open(out) as f:
            report = json.load(f)
    return parse_ghz(report), usage.ru_utime + usage.ru_stime, wall


@functools.lru_cache(maxsize=None)
def protoset(proto: str) -> str:
    """``proto`` (under proto/) compiled by protoc into a descriptor set for ghz, whose own
    .proto parser predates proto3 ``optional`` (service_desk.proto has one); made once per
    run, removed at exit."""
    out = tempfile.mkdtemp(prefix="bench-protoset-")
    atexit.register(shutil.rmtree, out, True)
    path = os.path.join(out, proto.replace("/", "_") + "set")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"), "--include_imports",
                    f"--descriptor_set_out={path}", proto], cwd=ROOT, check=True)
    return path


def parse_ghz(report: dict) -> dict:
    """ghz's JSON report -> the harness's summary (latencies in ns in ghz)."""
    codes = dict(report.get("statusCodeDistribution") or {})
    ok = codes.pop("OK", 0)
    pcts = {int(p["percentage"]): p["latency"] / 1e6 for p in report.get("latencyDistribution") or ()}
    window = report["total"] / 1e9
    return {
        "requests": ok,
        "rps": round(ok / window, 1) if window else 0.0,
        "p50_ms": round(pcts.get(50, 0.0), 2),
        "p99_ms": round(pcts.get(99, 0.0), 2),
        "errors": sum(codes.values()),
        "error_kinds": {**codes, **(report.get("errorDistribution") or {})} if codes else {},
    }


def tool_version(tool: str) -> str:
    if tool == "ghz":
        return f"ghz {GHZ_VERSION}"
    import grpc
    return f"bench.pyload (grpcio {grpc.__version__})"

