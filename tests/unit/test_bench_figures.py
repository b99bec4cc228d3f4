"""The benchmark's arithmetic: percentiles, ghz's report, the verdicts on the targets."""
from __future__ import annotations

import sys

from support.infra import ROOT

sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from bench.load import parse_ghz  # noqa: E402
from bench.run import add_ratios  # noqa: E402
from bench.stats import percentile, summarize  # noqa: E402


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7 and percentile([], 50) == 0
    s = summarize([0.002, 0.001, 0.003, 0.004], window_s=2.0, errors=1, error_kinds={"UNAVAILABLE": 1})
    assert s == {"requests": 4, "rps": 2.0, "p50_ms": 2.0, "p99_ms": 4.0, "errors": 1,
                 "error_kinds": {"UNAVAILABLE": 1}}


def test_ghz_report_counts_only_ok_as_throughput():
    r = parse_ghz({"total": 2_000_000_000, "count": 1010,
                   "statusCodeDistribution": {"OK": 1000, "Unavailable": 10},
                   "errorDistribution": {"rpc error: code = Unavailable": 10},
                   "latencyDistribution": [{"percentage": 50, "latency": 1_500_000},
                                           {"percentage": 99, "latency": 9_000_000}]})
    assert (r["requests"], r["rps"], r["p50_ms"], r["p99_ms"], r["errors"]) == (1000, 500.0, 1.5, 9.0, 10)
    assert r["error_kinds"]["Unavailable"] == 10


def _row(scenario, group, kind, rps, p99=10.0, in_flight=32, errors=0):
    return {"scenario": scenario, "group": group, "kind": kind, "in_flight": in_flight, "rps": rps,
            "requests": int(rps * 10), "p50_ms": 1.0, "p99_ms": p99, "errors": errors, "cpu": {}}


def test_targets_compare_with_the_full_hop_and_the_peer_at_the_same_in_flight():
    rows = [_row(report.FULL_HOP, "floor", "", 1000), _row(report.FULL_HOP, "floor", "", 100, in_flight=1),
            _row("get contact", "product", "read", 850, p99=60), _row("get contact", "product", "read", 10,
                                                                      in_flight=1),
            _row("create contact", "product", "write", 590),
            _row("get contact via ClusterRpcProxy", "peer", "", 500)]
    add_ratios(rows)
    assert rows[2]["ratio_to_full_hop"] == 0.85 and rows[3]["ratio_to_full_hop"] == 0.1
    assert rows[5]["gateway_over_peer"] == 1.7
    verdicts = {t["target"]: t["met"] for t in report.evaluate({"rows": rows, "pipeline": [
        {"scenario": "paced", "create_rps": 520.0, "enroll_rps": 515.0, "lag_p99_ms": 200.0, "errors": 0}]})}
    assert verdicts == {
        "get contact: >= 80% of the full hop at 32 in flight": True,
        "create contact: >= 60% of the full hop at 32 in flight": False,
        "get contact: p99 < 50 ms at 32 in flight": False,
        "create contact: p99 < 50 ms at 32 in flight": True,
        "event lag p99 < 250 ms at >= 500 creations/s (paced)": True,
        "get contact through the gateway >= 1.5x ClusterRpcProxy at 32 in flight": True,
    }
