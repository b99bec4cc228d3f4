"""``make bench`` / ``python -m bench``: start (or reuse) the local CRM, measure, report.

Settings (environment, or the options of the same name):
  BENCH_DURATION   seconds per measured run (10)      BENCH_WARMUP  seconds of warm-up (1)
  BENCH_IN_FLIGHT  requests in flight, e.g. "1,32"    BENCH_LOAD    ghz | python | auto (auto)
  BENCH_PIPELINE_N contacts (orders) per pipeline pass (300)
  BENCH_ONLY       floor,product,race,peer,pipeline,sales,service_desk,database,marketing
  BENCH_MARKETING_N contacts of marketing's segment evaluation and recipients of its campaign (100000)
  BENCH_OUT        where latest.json/.md go (bench/results)

`--only database` measures the database alone (bench/database.py: lookups at 5,000 and
50,000 documents in a private throw-away database, concurrency figures) and starts no
services: it uses MONGODB_URL, or the local FerretDB (scripts/infra.sh up ferretdb).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pymongo

from crm_common import config, registry

from . import (credentials, database, floors, load, marketing, paths, pipeline, procs, race, report, sales,
               service_desk)
from .cpu import find_pid, listening_pid, settle

GROUPS = ("floor", "product", "race", "peer", "pipeline", "sales", "service_desk", "database", "marketing")
PACED_SHARE = 0.7   # the sustainable pass runs at this share of the enrolment rate the first pass reached


@dataclass
class Config:
    duration: float = 10.0
    warmup: float = 1.0
    in_flight: tuple[int, ...] = (1, 32)
    pipeline_n: int = 300
    seed_count: int = 64
    tool: str = "auto"
    only: tuple[str, ...] = GROUPS
    settle: float = 15.0   # at most this long before each run for the stack to go quiet
    db_sizes: tuple[int, ...] = database.SIZES   # documents the database group measures at
    sla_tickets: int = 10_000                    # open tickets the service desk's SLA timer runs among
    marketing_n: int = 100_000     # contacts of the segment evaluation and recipients of the campaign


@dataclass
class Target:
    """A running CRM: where to call it, which processes to watch, where its data is."""
    gateway_addr: str
    amqp_uri: str
    pids: dict[str, int] = field(default_factory=dict)
    mongodb_url: str = ""
    databases: dict[str, str] = field(default_factory=dict)   # service -> database
    mailbox: Path = procs.ROOT / "var" / "mail"               # what the stack's mail sink received

    @classmethod
    def of(cls, stack) -> "Target":
        """From a scripts/stack.py Stack (make up's, or the end-to-end tests' private one).
        Its keys sign the benchmark's tokens (bench.credentials; the clients inherit this)."""
        os.environ[credentials.AUTH_DIR] = str(stack.run_dir / "auth")
        services = [s.name for s in registry.load().services]
        pids = {name: stack.running_pid(name) for name in ("gateway", *services)}
        pids.update(rabbitmq=server_pid(stack.amqp_uri, 5672, "beam.smp"),
                    ferretdb=server_pid(stack.mongodb_url, 27017, "ferretdb"))
        databases = {s: f"{stack.database_prefix}{s}" if stack.database_prefix else config.database_name(s)
                     for s in services}
        return cls(stack.gateway_addr, stack.amqp_uri, {k: v for k, v in pids.items() if v},
                   stack.mongodb_url, databases, stack.mailbox)

    def data_sizes(self) -> dict[str, int]:
        """Documents per collection: on FerretDB most queries scan, so figures depend on these."""
        sizes: dict[str, int] = {}
        with pymongo.MongoClient(self.mongodb_url, serverSelectionTimeoutMS=5000) as client:
            for service, name in self.databases.items():
                for coll in sorted(client[name].list_collection_names()):
                    sizes[f"{service}.{coll}"] = client[name][coll].estimated_document_count()
        return sizes


def server_pid(url: str, default_port: int, comm: str) -> int | None:
    """The process serving ``url`` when it runs here (the one listening on its port), else
    the oldest ``comm``: the figures are of the broker and database this stack uses."""
    parts = urllib.parse.urlsplit(url.split(",")[0])
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        pid = listening_pid(parts.port or default_port)
        if pid:
            return pid
    return find_pid(comm)


def database_target() -> Target:
    """For `--only database`: the database alone, no services, broker or gateway."""
    if not os.environ.get("MONGODB_URL"):
        subprocess.run([str(procs.ROOT / "scripts" / "infra.sh"), "up", "ferretdb"], check=True)
    return Target(gateway_addr="", amqp_uri="", mongodb_url=config.mongodb_url())


def local_target() -> Target:
    """The `make up` stack: started where it is not running, reused where it is."""
    if not (os.environ.get("AMQP_URI") or os.environ.get("MONGODB_URL")):
        subprocess.run([str(procs.ROOT / "scripts" / "infra.sh"), "up"], check=True)
    sys.path.insert(0, str(procs.ROOT / "scripts"))
    from stack import Stack
    stack = Stack()
    stack.up()
    return Target.of(stack)


class Run:
    """One benchmark run: each group of scenarios appends its rows to ``results``."""

    def __init__(self, target: Target, cfg: Config, say: Callable[[str], None]):
        self.target, self.cfg, self.say = target, cfg, say
        self.tool = load.pick_tool(cfg.tool)
        self.tool_label = "ghz" if self.tool == "ghz" else "pyload"
        self.watched = {**target.pids, "harness": os.getpid()}
        self.results = {"meta": meta(cfg, self.tool), "rows": [], "pipeline": [], "failures": []}
        self.seed: paths.Seed | None = None

    def record(self, scenario: str, group: str, in_flight: int, result: dict, cpu: dict, *, load_name: str,
               kind: str = "") -> None:
        cpu = {**cpu, load_name: result.pop("load_cpu", None)}
        row = {"scenario": scenario, "group": group, "kind": kind, "in_flight": in_flight, **result, "cpu": cpu}
        self.results["rows"].append(row)
        self.say(f"  {scenario:36s} {in_flight:>3} in flight: {row['rps']:8.1f} req/s  p50 {row['p50_ms']:7.2f} ms"
                 f"  p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}  [{report.top_cpu(cpu)}]")

    def settle(self) -> dict:
        """Before each measured run: let the stack go quiet (see bench.cpu.settle)."""
        return {"settle_s": settle(self.target.pids, timeout=self.cfg.settle)}

    def grpc(self, scenario: str, group: str, call, pids: dict[str, int], kind: str = "") -> None:
        for c in self.cfg.in_flight:
            waited = self.settle()
            res, cpu = load.run(call, c, self.cfg.duration, self.cfg.warmup, self.tool, pids)
            self.record(scenario, group, c, {**res, **waited}, cpu, load_name=self.tool_label, kind=kind)

    def python_client(self, scenario: str, group: str, module: str, spec: dict, pids: dict[str, int],
                      load_name: str, *args: str) -> None:
        for c in self.cfg.in_flight:
            spec = {**spec, "in_flight": c, "duration": self.cfg.duration, "warmup": self.cfg.warmup}
            waited = self.settle()
            res, cpu = procs.run_client(procs.module_command(module, *args), spec, pids,
                                        timeout=self.cfg.duration + self.cfg.warmup + 120)
            self.record(scenario, group, c, {**res, **waited}, cpu, load_name=load_name)

    # ------------------------------------------------------------------ groups
    def floor(self) -> None:
        self.say("floors")
        with floors.Echoes(self.target.amqp_uri).running() as echoes:
            self.grpc("gRPC echo (grpc.aio, no work)", "floor", floors.echo_call(echoes.grpc_addr),
                      {**self.watched, "grpc echo server": echoes.pids["grpc echo server"]})
            self.python_client("AMQP echo (pika <-> pika)", "floor", "bench.amqp_echo", echoes.amqp_spec(),
                               {**self.watched, "amqp responder": echoes.pids["amqp responder"]},
                               "pika client", "client")
        self.grpc(report.FULL_HOP, "floor", floors.echo_call(self.target.gateway_addr), self.watched)

    def seeded(self) -> paths.Seed:
        if self.seed is None:
            self.say("seeding contacts and members")
            self.seed = paths.seed(self.target.gateway_addr, self.cfg.seed_count)
        return self.seed

    def product(self) -> None:
        seed = self.seeded()
        self.say("product paths through the gateway")
        for path in paths.paths(self.target.gateway_addr, seed):
            self.grpc(path.name, "product", path.call, self.watched, kind=path.kind)

    def race(self) -> None:
        self.say(f"contention: {race.REQUESTS} racing 1-point redemptions of {race.POINTS} points, "
                 f"{race.IN_FLIGHT} in flight")
        waited = self.settle()
        r = race.run(self.target.gateway_addr, self.target.mongodb_url, self.target.databases.get("loyalty", ""),
                     self.watched, self.tool)
        self.results["race"] = {**r, **waited}
        self.say(f"  {r['seconds']:.2f} s: {r['ok']} succeeded, {r['refused']} refused, {r['other']} other; "
                 f"balance {r['balance']}, ledger sum {r['ledger_sum']}  [{report.top_cpu(r['cpu'])}]")

    def peer(self) -> None:
        seed = self.seeded()
        self.say("peer baseline: nameko ClusterRpcProxy")
        self.python_client("get contact via ClusterRpcProxy", "peer", "bench.peer",
                           {"amqp_uri": self.target.amqp_uri, "contact_ids": seed.contact_ids},
                           self.watched, "proxy client")

    def pipeline(self) -> None:
        self.say("event pipeline: consenting contacts -> loyalty enrolment")
        top, n = max(self.cfg.in_flight), self.cfg.pipeline_n
        self.pipeline_pass(f"as fast as taken ({top} in flight)", n, top, None)
        first = self.results["pipeline"][-1]
        rate = min(report.LAG_RATE_TARGET, round(first["enroll_rps"] * PACED_SHARE))
        if rate > 0:
            self.pipeline_pass(f"paced at {rate:.0f}/s", n, top, rate)

    def sales(self) -> None:
        seed = self.seeded()
        self.say("sales paths through the gateway")
        deals = sales.seed_deals(self.target.gateway_addr, seed.contact_ids)
        for path in sales.paths(self.target.gateway_addr, seed.run, seed.contact_ids, deals):
            self.grpc(path.name, "sales", path.call, self.watched, kind=path.kind)
        self.say("order -> points: orders placed and paid, until loyalty's points_earned for each")
        top, n = max(self.cfg.in_flight), self.cfg.pipeline_n
        self.order_points_pass(f"as fast as taken ({top} in flight)", n, top, None)
        rate = round(self.results["order_points"][-1]["paid_rps"] * PACED_SHARE)
        if rate > 0:
            self.order_points_pass(f"paced at {rate:.0f}/s", n, top, rate)

    def order_points_pass(self, name: str, n: int, in_flight: int, rate: float | None) -> None:
        waited = self.settle()
        p = sales.order_points(self.target.gateway_addr, self.target.amqp_uri, self.seeded().contact_ids, n,
                               in_flight, rate, self.watched)
        self.results.setdefault("order_points", []).append({"scenario": name, **p, **waited})
        self.say(f"  {name:36s} paid {p['paid_rps']:.1f}/s points {p['points_rps']:.1f}/s"
                 f"  lag p50 {p['lag_p50_ms']:.0f} ms p99 {p['lag_p99_ms']:.0f} ms  errors {p['errors']}")

    def service_desk(self) -> None:
        seed = self.seeded()
        self.say("service desk paths through the gateway")
        for path in service_desk.paths(self.target.gateway_addr, seed):
            self.grpc(path.name, "service_desk", path.call, self.watched, kind=path.kind)
        self.say("service desk: how late SLA breaches are published")
        self.results["sla_timer"] = r = service_desk.sla_timer(
            self.target.amqp_uri, self.target.mongodb_url, self.target.databases.get("service-desk", ""), self.say,
            open_tickets=self.cfg.sla_tickets, due=min(300, max(self.cfg.sla_tickets // 20, 10)))
        self.say(f"  {service_desk.summary_line(r)}")

    def marketing(self) -> None:
        n, top = self.cfg.marketing_n, max(self.cfg.in_flight)
        self.say(f"marketing: a segment over {n:,} contacts, a campaign to {n:,}, event -> membership lag")
        m = self.results["marketing"] = {"evaluation": marketing.evaluation(self.target.mongodb_url, n, self.say)}
        self.settle()
        m["campaign"] = marketing.campaign(self.target.gateway_addr, self.target.mongodb_url,
                                           self.target.databases["marketing"], self.target.mailbox, n, self.watched,
                                           self.say, window_s=max(3 * self.cfg.duration, 3))
        m["lag"] = []
        for rate in (None, 100.0):
            self.settle()
            m["lag"].append(marketing.membership_lag(self.target.gateway_addr, self.target.amqp_uri,
                                                     self.cfg.pipeline_n, rate, top, self.watched))
            self.say(f"  {marketing.lines({'lag': m['lag'][-1:]})[0]}")

    def database(self) -> None:
        self.say("database alone: lookups and guarded writes, concurrency (a private throw-away database)")
        self.results["database"] = database.run(self.target.mongodb_url, self.say,
                                                budget_s=max(self.cfg.duration / 2, 0.5), sizes=self.cfg.db_sizes)

    def pipeline_pass(self, name: str, n: int, in_flight: int, rate: float | None) -> None:
        waited = self.settle()
        p = pipeline.run(self.target.gateway_addr, self.target.amqp_uri, n, in_flight, rate, self.watched)
        p["cpu"]["harness (load)"] = p["cpu"].pop("harness", None)
        self.results["pipeline"].append({"scenario": name, **p, **waited})
        self.say(f"  {name:36s} created {p['create_rps']:.1f}/s enrolled {p['enroll_rps']:.1f}/s"
                 f"  lag p50 {p['lag_p50_ms']:.0f} ms p99 {p['lag_p99_ms']:.0f} ms  errors {p['errors']}")


def run_all(target: Target, cfg: Config, say: Callable[[str], None] = print) -> dict:
    run = Run(target, cfg, say)
    run.results["meta"]["data_before"] = target.data_sizes()
    for group in GROUPS:
        if group in cfg.only:
            try:
                getattr(run, group)()
            except Exception as exc:  # noqa: BLE001 - one broken group must not lose the others' figures
                say(f"  {group} FAILED: {exc!r}")
                run.results["failures"].append({"group": group, "error": repr(exc)})
    results = run.results
    add_ratios(results["rows"])
    results["meta"]["loadavg_end"] = loadavg()
    results["meta"]["data_after"] = target.data_sizes()
    results["targets"] = report.evaluate(results)
    return results


def add_ratios(rows: list[dict]) -> None:
    full_hop = {r["in_flight"]: r["rps"] for r in rows if r["scenario"] == report.FULL_HOP}
    gateway_get = {r["in_flight"]: r["rps"] for r in rows if r["scenario"] == "get contact"}
    for r in rows:
        if full_hop.get(r["in_flight"]):
            r["ratio_to_full_hop"] = round(r["rps"] / full_hop[r["in_flight"]], 3)
        if r["group"] == "peer" and r["rps"] and r["in_flight"] in gateway_get:
            r["gateway_over_peer"] = round(gateway_get[r["in_flight"]] / r["rps"], 2)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def meta(cfg: Config, tool: str) -> dict:
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=procs.ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "nproc": os.cpu_count(),
            "loadavg_start": loadavg(), "loadavg_end": None, "platform": platform.platform(),
            "python": f"Python {platform.python_version()}", "load_tool": load.tool_version(tool),
            "commit": commit, "duration_s": cfg.duration, "warmup_s": cfg.warmup,
            "in_flight": list(cfg.in_flight), "pipeline_contacts": cfg.pipeline_n}


def parse_args(argv: list[str]) -> tuple[Config, Path]:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", 10)))
    p.add_argument("--warmup", type=float, default=float(env("BENCH_WARMUP", 1)))
    p.add_argument("--in-flight", default=env("BENCH_IN_FLIGHT", "1,32"))
    p.add_argument("--pipeline-n", type=int, default=int(env("BENCH_PIPELINE_N", 300)))
    p.add_argument("--load", choices=("auto", "ghz", "python"), default=env("BENCH_LOAD", "auto"))
    p.add_argument("--only", default=env("BENCH_ONLY", ",".join(GROUPS)))
    p.add_argument("--marketing-n", type=int, default=int(env("BENCH_MARKETING_N", 100_000)))
    p.add_argument("--out", type=Path, default=Path(env("BENCH_OUT", procs.ROOT / "bench" / "results")))
    a = p.parse_args(argv)
    only = tuple(g for g in a.only.split(",") if g)
    if set(only) - set(GROUPS):
        p.error(f"--only takes {','.join(GROUPS)}")
    cfg = Config(duration=a.duration, warmup=a.warmup, in_flight=tuple(int(c) for c in a.in_flight.split(",")),
                 pipeline_n=a.pipeline_n, tool=a.load, only=only, marketing_n=a.marketing_n)
    return cfg, a.out


def main(argv: list[str] | None = None) -> int:
    cfg, out = parse_args(sys.argv[1:] if argv is None else argv)
    target = database_target() if cfg.only == ("database",) else local_target()
    results = run_all(target, cfg)
    print()
    print(report.render_text(results))
    report.write(results, out)
    print(f"\nwritten: {out}/latest.json, {out}/latest.md")
    return 0
