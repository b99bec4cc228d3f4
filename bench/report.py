"""The results: a printed table, bench/results/latest.json and latest.md, and where
they stand against the targets of issue 4."""
from __future__ import annotations

import json
from pathlib import Path

from . import marketing

READ_TARGET, WRITE_TARGET, P99_TARGET_MS = 0.80, 0.60, 50.0
LAG_TARGET_MS, LAG_RATE_TARGET, PEER_TARGET = 250.0, 500.0, 1.5
RACE_TARGET_S = 5.0   # issue 9: 1,000 racing redemptions of 300 points at 64 in flight
FULL_HOP = "full hop (gateway -> service echo)"


def service_desk_line(r: dict) -> str:
    from .service_desk import summary_line
    return summary_line(r)


def top_cpu(cpu: dict[str, float], n: int = 4) -> str:
    busiest = sorted(cpu.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {pct:.0f}" for name, pct in busiest if pct >= 1)


def _fmt(v, digits=1) -> str:
    return "" if v is None else f"{v:.{digits}f}"


ROW_COLUMNS = ("scenario", "in-flight", "req/s", "p50 ms", "p99 ms", "errors", "x full hop",
               "CPU % of a core (top)")
ORDER_COLUMNS = ("order -> points pass", "orders", "placed+paid/s", "points/s", "lag p50 ms", "lag p99 ms",
                 "from pay ack p50/p99 ms", "errors", "CPU % of a core (top)")
PIPE_COLUMNS = ("pipeline pass", "contacts", "created/s", "enrolled/s", "lag p50 ms", "lag p99 ms",
                "from ack p50/p99 ms", "errors", "CPU % of a core (top)")


def row_cells(r: dict) -> list[str]:
    return [r["scenario"], str(r["in_flight"]), _fmt(r["rps"]), _fmt(r["p50_ms"], 2), _fmt(r["p99_ms"], 2),
            str(r["errors"]), _fmt(r.get("ratio_to_full_hop"), 2), top_cpu(r["cpu"])]


def pipe_cells(p: dict) -> list[str]:
    return [p["scenario"], str(p["contacts"]), _fmt(p["create_rps"]), _fmt(p["enroll_rps"]),
            _fmt(p["lag_p50_ms"]), _fmt(p["lag_p99_ms"]),
            f"{p['lag_from_ack_p50_ms']:.0f}/{p['lag_from_ack_p99_ms']:.0f}", str(p["errors"]), top_cpu(p["cpu"])]


def order_cells(p: dict) -> list[str]:
    return [p["scenario"], str(p["orders"]), _fmt(p["paid_rps"]), _fmt(p["points_rps"]), _fmt(p["lag_p50_ms"]),
            _fmt(p["lag_p99_ms"]), f"{p['lag_from_ack_p50_ms']:.0f}/{p['lag_from_ack_p99_ms']:.0f}",
            str(p["errors"]), top_cpu(p["cpu"])]


def text_table(columns, rows) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(columns, rows) -> str:
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                      *("| " + " | ".join(r) + " |" for r in rows)])


# ------------------------------------------------------------------ targets

def evaluate(results: dict) -> list[dict]:
    """Each target of issue 4, measured at the largest in-flight count of the run."""
    rows, out = results["rows"], []
    top = max((r["in_flight"] for r in rows), default=0)
    at_top = [r for r in rows if r["in_flight"] == top and r["group"] == "product"]
    for kind, goal in (("read", READ_TARGET), ("write", WRITE_TARGET)):
        for r in (r for r in at_top if r["kind"] == kind):
            ratio = r.get("ratio_to_full_hop")
            out.append({"target": f"{r['scenario']}: >= {goal:.0%} of the full hop at {top} in flight",
                        "value": None if ratio is None else f"{ratio:.0%}",
                        "met": ratio is not None and ratio >= goal})
    for r in at_top:
        out.append({"target": f"{r['scenario']}: p99 < {P99_TARGET_MS:.0f} ms at {top} in flight",
                    "value": f"{r['p99_ms']:.1f} ms",
                    "met": r["requests"] > 0 and r["p99_ms"] < P99_TARGET_MS and r["errors"] == 0})
    for p in results.get("pipeline", ()):
        fast_enough = p["create_rps"] >= LAG_RATE_TARGET
        out.append({"target": f"event lag p99 < {LAG_TARGET_MS:.0f} ms at >= {LAG_RATE_TARGET:.0f} creations/s "
                              f"({p['scenario']})",
                    "value": f"{p['lag_p99_ms']:.0f} ms at {p['create_rps']:.0f} created/s, "
                             f"{p['enroll_rps']:.0f} enrolled/s",
                    "met": fast_enough and p["lag_p99_ms"] < LAG_TARGET_MS and p["errors"] == 0})
    race = results.get("race")
    if race:
        exact = race["ok"] == race["points"] and race["refused"] == race["requests"] - race["points"] \
            and race["balance"] == 0 == race["ledger_sum"] and race["other"] == 0
        out.append({"target": f"{race['requests']} racing redemptions of {race['points']} points at "
                              f"{race['in_flight']} in flight: exactly {race['points']} succeed, balance 0, "
                              f"ledger sums to it",
                    "value": f"{race['ok']} succeeded, {race['refused']} refused, {race['other']} other, "
                             f"balance {race['balance']}, ledger {race['ledger_sum']}", "met": exact})
        out.append({"target": f"... in under {RACE_TARGET_S:.0f} s", "value": f"{race['seconds']:.2f} s",
                    "met": race["seconds"] < RACE_TARGET_S})
    for r in (r for r in rows if r["group"] == "peer" and r["in_flight"] == top):
        ratio = r.get("gateway_over_peer")
        out.append({"target": f"get contact through the gateway >= {PEER_TARGET}x ClusterRpcProxy at {top} in flight",
                    "value": None if ratio is None else f"{ratio:.2f}x",
                    "met": ratio is not None and ratio >= PEER_TARGET})
    out += marketing.targets(results.get("marketing") or {})
    return out


# ------------------------------------------------------------------ output

def render_text(results: dict) -> str:
    m = results["meta"]
    parts = [f"CRM benchmark {m['date']}  nproc={m['nproc']}  load avg {m['loadavg_start']} -> {m['loadavg_end']}"
             f"  {m['duration_s']} s per run, {m['warmup_s']} s warm-up, load: {m['load_tool']}"]
    if results["rows"]:
        parts.append(text_table(ROW_COLUMNS, [row_cells(r) for r in results["rows"]]))
    if results.get("pipeline"):
        parts.append(text_table(PIPE_COLUMNS, [pipe_cells(p) for p in results["pipeline"]]))
    if results.get("order_points"):
        parts.append(text_table(ORDER_COLUMNS, [order_cells(p) for p in results["order_points"]]))
    if results.get("race"):
        parts.append(text_table(*race_table(results)))
    if results.get("database"):
        parts.append(text_table(*database_table(results["database"])))
    if results.get("sla_timer"):
        parts.append(service_desk_line(results["sla_timer"]))
    if results.get("marketing"):
        parts.append("\n".join(marketing.lines(results["marketing"])))
    if results.get("failures"):
        parts.append("\n".join(f"FAILED  {f['group']}: {f['error']}" for f in results["failures"]))
    if results.get("targets"):
        parts.append("\n".join(f"{'MET ' if t['met'] else 'MISS'}  {t['target']}: {t['value']}"
                               for t in results["targets"]))
    return "\n\n".join(parts)


def render_markdown(results: dict) -> str:
    m = results["meta"]
    lines = [f"# Benchmark results ({m['date']})", "",
             f"- machine: {m['nproc']} cores, load average {m['loadavg_start']} at the start, "
             f"{m['loadavg_end']} at the end; {m['platform']}",
             f"- {m['python']}; load generated by {m['load_tool']}; commit {m['commit']}",
             f"- {m['duration_s']} s per measured run after {m['warmup_s']} s of warm-up; "
             f"in flight: {', '.join(map(str, m['in_flight']))}",
             "- CPU: % of one core over the measured window, busiest processes first",
             f"- documents before the run: {_sizes(m.get('data_before'))}",
             f"- documents after the run: {_sizes(m.get('data_after'))}", ""]
    if results["rows"]:
        lines += [md_table(ROW_COLUMNS, [row_cells(r) for r in results["rows"]]), ""]
    if results.get("pipeline"):
        lines += ["Event pipeline (lag = `member_enrolled` heard - create request sent):", "",
                  md_table(PIPE_COLUMNS, [pipe_cells(p) for p in results["pipeline"]]), ""]
    if results.get("order_points"):
        lines += ["Order -> points (lag = loyalty's `points_earned` for the order heard - PlaceOrder sent; "
                  "each order is placed, then paid):", "",
                  md_table(ORDER_COLUMNS, [order_cells(p) for p in results["order_points"]]), ""]
    if results.get("race"):
        lines += ["Contention on one member (racing redemptions):", "", md_table(*race_table(results)), ""]
    if results.get("sla_timer"):
        lines += [service_desk_line(results["sla_timer"]), ""]
    if results.get("database"):
        d = results["database"]
        lines += [f"The database alone ({d['server']}; median ms of each lookup, per collection size):", "",
                  md_table(*database_table(d)), "",
                  *(f"- {label}: {value}" for label, value in d.get("concurrency", {}).items()), ""]
    if results.get("marketing"):
        lines += ["Marketing:", "", *(f"- {line.strip()}" for line in marketing.lines(results["marketing"])), ""]
    if results.get("failures"):
        lines += ["Failed groups (their rows are missing):", "",
                  *(f"- {f['group']}: `{f['error']}`" for f in results["failures"]), ""]
    if results.get("targets"):
        lines += ["Targets:", "", *(f"- {'met' if t['met'] else '**missed**'}: {t['target']}: {t['value']}"
                                    for t in results["targets"]), ""]
    return "\n".join(lines)


def race_table(results: dict) -> tuple[tuple[str, ...], list[list[str]]]:
    r = results["race"]
    floor = next((x["rps"] for x in results["rows"] if x["scenario"] == FULL_HOP and x["in_flight"] >= r["in_flight"]
                  // 2), None)
    as_floor = f"{r['seconds'] * floor / r['requests']:.1f}x" if floor else "-"
    return (("requests", "in flight", "seconds", "x the full hop's time for as many", "succeeded", "refused", "other",
             "balance", "ledger sum", "CPU % of a core (top)"),
            [[str(r["requests"]), str(r["in_flight"]), f"{r['seconds']:.2f}", as_floor, str(r["ok"]), str(r["refused"]),
              str(r["other"]), str(r["balance"]), str(r["ledger_sum"]), top_cpu(r["cpu"])]])


def database_table(d: dict) -> tuple[tuple[str, ...], list[list[str]]]:
    """The database group: one row per lookup, a median-ms column per collection size."""
    sizes = list(d["sizes"])
    labels = [k for k in d["sizes"][sizes[0]] if k != "insert_per_s"] if sizes else []
    rows = [[label, *(_fmt(d["sizes"][s][label]["median_ms"], 2) for s in sizes)] for label in labels]
    rows.append(["insert_many, documents/s", *(str(d["sizes"][s]["insert_per_s"]) for s in sizes)])
    return ("database lookup (median ms)", *(f"{int(s):,} docs" for s in sizes)), rows


def _sizes(sizes: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (sizes or {}).items()) or "unknown"


def write(results: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (directory / "latest.md").write_text(render_markdown(results))
