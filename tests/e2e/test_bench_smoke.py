"""The benchmark harness (bench/, `make bench`) still runs: every scenario for about a
second against the private end-to-end stack. Figures are not judged here, only that
each scenario produced figures and no errors."""
from __future__ import annotations

import sys

import pytest

from support.infra import ROOT

sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from bench.run import GROUPS, Config, Target, run_all  # noqa: E402

pytestmark = pytest.mark.e2e


def test_every_scenario_reports_figures_without_errors(stack, tmp_path):
    cfg = Config(duration=1, warmup=0, in_flight=(4,), pipeline_n=12, seed_count=4, settle=0, db_sizes=(300, 1000),
                 sla_tickets=400, marketing_n=500)
    results = run_all(Target.of(stack), cfg, say=lambda _: None)
    assert results["failures"] == []

    rows = {r["scenario"]: r for r in results["rows"]}
    assert {"gRPC echo (grpc.aio, no work)", "AMQP echo (pika <-> pika)", report.FULL_HOP, "create contact",
            "get contact", "search contacts", "log interaction", "earn points", "redeem points",
            "get contact via ClusterRpcProxy", "create lead", "move deal", "place order", "open ticket",
            "reply to ticket"} == set(rows)
    for name, r in rows.items():
        assert r["requests"] > 0 and r["rps"] > 0 and r["errors"] == 0, (name, r)
        assert 0 < r["p50_ms"] <= r["p99_ms"], (name, r)
        assert r["cpu"]["gateway"] >= 0 and r["cpu"]["contacts"] >= 0, (name, r["cpu"])
    assert rows["get contact"]["ratio_to_full_hop"] > 0
    assert rows["get contact via ClusterRpcProxy"]["gateway_over_peer"] > 0
    for p in results["pipeline"]:
        assert p["errors"] == 0 and p["create_rps"] > 0 and p["enroll_rps"] > 0, p
        assert 0 < p["lag_p50_ms"] <= p["lag_p99_ms"], p
    for p in results["order_points"]:
        assert p["errors"] == 0 and p["paid_rps"] > 0 and p["points_rps"] > 0, p
        assert 0 < p["lag_p50_ms"] <= p["lag_p99_ms"], p
    assert len(results["targets"]) >= 6 and set(GROUPS) == set(cfg.only)
    sla = results["sla_timer"]
    assert sla["breaches"] == sla["due"] > 0 and sla["duplicates"] == 0 and 0 <= sla["late_p50_ms"] <= sla["late_p99_ms"]
    db = results["database"]
    assert set(db["sizes"]) == {"300", "1000"} and db["concurrency"]["20 x 30 $inc: kept of 600"] == 600
    assert all(f["median_ms"] > 0 for size in db["sizes"].values() for k, f in size.items() if k != "insert_per_s")

    m = results["marketing"]
    assert all(r["median_s"] > 0 for r in m["evaluation"]["rules"].values()) and m["campaign"]["queue_s"] > 0
    assert m["campaign"]["sink_received"] > 0 and all(p["heard"] == 12 and p["errors"] == 0 for p in m["lag"])

    report.write(results, tmp_path)
    assert "full hop" in (tmp_path / "latest.md").read_text()
    assert report.render_text(results).count("\n") > len(rows)
