"""Checks of the monitoring component (deploy/k8s/components/monitoring), run by
scripts/check-monitoring.sh as part of `make k8s-check`:

1. the PrometheusRule's groups pass `promtool check rules`, and its unit tests
   (tests/*.test.yaml) pass `promtool test rules`;
2. every dashboard is well-formed Grafana JSON on the `${datasource}` variable, and its
   queries are valid PromQL (promtool checks them as recording rules);
3. every metric a dashboard query or an alert reads is one the CRM processes export
   (taken from their real prometheus_client registries, not a hand list) or one of the
   EXTERNAL_METRICS below, and every label it filters or groups on exists on it.

tests/e2e/test_metrics_exposition.py imports this module for the selectors the
dashboards and alerts use and checks them against the live /metrics of every process.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPONENT = ROOT / "deploy" / "k8s" / "components" / "monitoring"
RULES_FILE = COMPONENT / "prometheusrule.yaml"
RULE_TESTS = sorted((COMPONENT / "tests").glob("*.test.yaml"))
DASHBOARDS = sorted((COMPONENT / "dashboards").glob("*.json"))
EXTRACTED_RULES = "crm.rules.yaml"   # the name the rule tests' rule_files expect

# Metrics exported by something other than a CRM process, each with its exporter and
# labels. The one place to add an external name; a name not here and not exported by
# our processes fails the check (an alert on a metric nobody exports never fires).
EXTERNAL_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "up": ("Prometheus itself: 1 per target it scraped, 0 when the scrape failed", frozenset()),
    # RabbitMQ's rabbitmq_prometheus plugin, endpoint /metrics/per-object (podmonitors.yaml)
    "rabbitmq_queue_messages_ready": ("rabbitmq_prometheus: messages waiting for a consumer",
                                      frozenset({"vhost", "queue"})),
    "rabbitmq_queue_messages_unacked": ("rabbitmq_prometheus: delivered, not yet acknowledged",
                                        frozenset({"vhost", "queue"})),
    "rabbitmq_queue_consumers": ("rabbitmq_prometheus: consumers attached to the queue",
                                 frozenset({"vhost", "queue"})),
}
PODMONITORS_FILE = COMPONENT / "podmonitors.yaml"


def relabeled_target_labels() -> frozenset[str]:
    """The target labels the PodMonitors' relabelings add (e.g. `component`)."""
    return frozenset(r["targetLabel"] for doc in yaml.safe_load_all(PODMONITORS_FILE.read_text()) if doc
                     for endpoint in doc["spec"].get("podMetricsEndpoints") or []
                     for r in endpoint.get("relabelings") or [] if r.get("targetLabel"))


# Labels Prometheus adds to every series scraped through the PodMonitors: the Prometheus
# Operator's own, and those podmonitors.yaml relabels in.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "endpoint"}) | relabeled_target_labels()
# Label values fixed by a library: the gateway records go-grpc-prometheus' code spellings.
GRPC_CODE_LABEL = "grpc_code"

# Grafana's interval variables, replaced by a duration so promtool can parse the query.
_GRAFANA_INTERVALS = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}")


# --------------------------------------------------------------------------- PromQL

@dataclass(frozen=True)
class Matcher:
    label: str
    op: str      # = != =~ !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None   # PromQL regexes are anchored
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()

    def __str__(self) -> str:
        inner = ", ".join(f'{m.label}{m.op}"{m.value}"' for m in self.matchers)
        return f"{self.metric}{{{inner}}}"


@dataclass
class Query:
    """The metric selectors of one PromQL expression and the labels it aggregates or
    joins on (by/without/on/ignoring/group_*)."""
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


_TOKEN = re.compile(r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)[a-zA-Z0-9]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<var>\$\{[^}]*\}|\$\w+)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=@,{}()])
  | (?P<space>\s+)
""", re.X)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r} in {expr!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse(expr: str) -> Query:
    """The selectors and grouping labels of ``expr``: enough PromQL to name what a query
    reads. Syntax is promtool's job (check_rules / check_dashboard_queries)."""
    toks, q, i = _tokens(expr), Query(), 0

    def label_list(start: int) -> int:   # "(a, b)" -> grouping labels; index after ")"
        j = start + 1
        while j < len(toks) and toks[j][1] != ")":
            if toks[j][0] == "ident":
                q.grouping.add(toks[j][1])
            j += 1
        return j + 1

    def matchers(start: int) -> tuple[tuple[Matcher, ...], int]:   # "{...}" -> matchers, index after "}"
        found, j = [], start + 1
        while toks[j][1] != "}":
            if toks[j][1] == ",":
                j += 1
                continue
            (_, label), (_, op), (_, value) = toks[j:j + 3]
            found.append(Matcher(label, op, _unquote(value)))
            j += 3
        return tuple(found), j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in _GROUPING:
            i = label_list(i + 1) if nxt == "(" else i + 1
        elif kind == "ident" and (text.lower() in _KEYWORDS or nxt in ("(", "by", "without")):
            i += 1   # operator keyword, function, or aggregation ("sum by (x) (...)")
        elif kind == "ident":
            found, i = matchers(i + 1) if nxt == "{" else ((), i + 1)
            q.selectors.append(Selector(text, found))
        elif text == "{":   # {__name__="..."} without a leading name
            found, i = matchers(i)
            names = [m.value for m in found if m.label == "__name__" and m.op == "="]
            q.selectors.append(Selector(names[0] if names else "", found))
        else:
            i += 1
    return q


# --------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Use:
    """One query a dashboard or alert runs, and where it is."""
    where: str
    expr: str


def _load_rules() -> dict:
    doc = yaml.safe_load(RULES_FILE.read_text())
    assert doc.get("kind") == "PrometheusRule", f"{RULES_FILE} is not a PrometheusRule"
    return doc["spec"]


def rule_uses() -> list[Use]:
    return [Use(f"alert {r.get('alert') or r.get('record')}", r["expr"])
            for g in _load_rules()["groups"] for r in g["rules"]]


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])   # a collapsed row holds its panels


def _template_query(var: dict) -> str | None:
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    if not query or var.get("type") != "query":
        return None
    m = re.fullmatch(r"\s*(?:label_values|query_result)\((.*?)(?:,\s*\w+)?\)\s*", query)
    return m.group(1) if m else query


def dashboard_uses() -> list[Use]:
    uses = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for var in board.get("templating", {}).get("list", []):
            query = _template_query(var)
            if query:
                uses.append(Use(f"{path.name} variable ${var['name']}", query))
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    uses.append(Use(f"{path.name} panel {panel.get('title')!r} {target.get('refId')}",
                                    target["expr"]))
    return uses


def all_uses() -> list[Use]:
    return rule_uses() + dashboard_uses()


def promql(expr: str) -> str:
    """A dashboard query as Prometheus would receive it (Grafana's intervals filled in)."""
    return _GRAFANA_INTERVALS.sub("5m", expr)


# --------------------------------------------------------------------------- exported metrics

# Runs in a child .venv python: importing the services pulls in nameko and eventlet,
# which this process does not need. Importing the modules only defines their metrics.
# The gateway's metrics all live in crm_gateway.metrics (its server module needs the
# generated gRPC code, which `make k8s-check` does not build).
_DUMP_REGISTRY = r"""
import importlib, json, sys
from prometheus_client import REGISTRY
from crm_common import registry

services = [s.module.split(":")[0] for s in registry.load().services]
if not services:
    sys.exit("no service in the registry " + str(registry.path()))
for module in ["crm_gateway.metrics", *services]:
    importlib.import_module(module)

SUFFIXES = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"],
            "summary": ["", "_sum", "_count", "_created"], "info": ["_info"]}
out = {}
for collector in list(REGISTRY._collector_to_names):
    labelnames = list(getattr(collector, "_labelnames", ()))
    for family in collector.collect():
        for suffix in SUFFIXES.get(family.type, [""]):
            labels = set(labelnames) | ({"le"} if suffix == "_bucket" else set()) \
                | ({"quantile"} if family.type == "summary" and suffix == "" else set())
            out[family.name + suffix] = sorted(labels)
        for sample in family.samples:   # collectors that are not client metrics (process_, python_)
            out.setdefault(sample.name, sorted(sample.labels))
json.dump(out, sys.stdout)
"""


def exported_metrics() -> dict[str, set[str]]:
    """Sample name -> label names, for every sample the CRM processes can export."""
    result = subprocess.run([sys.executable, "-c", _DUMP_REGISTRY], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"reading the processes' metric registries failed:\n{result.stderr}")
    return {name: set(labels) for name, labels in json.loads(result.stdout).items()}


# --------------------------------------------------------------------------- checks

def metric_problems(uses: list[Use], exported: dict[str, set[str]]) -> list[str]:
    """Unknown metrics, and labels that no metric of the query has."""
    import grpc
    from crm_gateway.metrics import code_label   # the spelling the gateway records

    known = {name: labels for name, labels in exported.items()}
    known.update({name: set(labels) for name, (_, labels) in EXTERNAL_METRICS.items()})
    codes = {code_label(code) for code in grpc.StatusCode}
    problems = []
    for name, labels in sorted(exported.items()):
        for label in sorted(labels & TARGET_LABELS):
            problems.append(f"{name} has its own label {label!r}, a target label too: Prometheus would "
                            f"rename it exported_{label}")
    for use in uses:
        query = parse(use.expr)
        if not query.selectors:
            problems.append(f"{use.where}: reads no metric: {use.expr!r}")
        in_query = set(TARGET_LABELS)
        for sel in query.selectors:
            if sel.metric not in known:
                problems.append(f"{use.where}: {sel.metric or sel} is exported by no CRM process "
                                "and is not in EXTERNAL_METRICS")
                continue
            labels = known[sel.metric] | TARGET_LABELS | {"__name__"}
            in_query |= labels
            for m in sel.matchers:
                if m.label not in labels:
                    problems.append(f"{use.where}: {sel.metric} has no label {m.label!r}")
                if m.label == GRPC_CODE_LABEL and m.op in ("=", "=~"):
                    for code in re.split(r"\|", m.value):
                        if re.fullmatch(r"[A-Za-z_]+", code) and code not in codes:
                            problems.append(f"{use.where}: grpc_code {code!r} is no gRPC code as the gateway spells it (e.g. NotFound)")
        for label in sorted(query.grouping - in_query):
            problems.append(f"{use.where}: groups by {label!r}, which no metric of the query has")
    return problems


def dashboard_problems() -> list[str]:
    """What Grafana's provisioning and our conventions need of each dashboard."""
    problems, uids = [], set()
    if not DASHBOARDS:
        problems.append(f"no dashboards in {COMPONENT / 'dashboards'}")
    for path in DASHBOARDS:
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name}: not JSON: {exc}")
            continue
        where = path.name
        for key in ("uid", "title", "schemaVersion", "panels"):
            if not board.get(key):
                problems.append(f"{where}: no {key}")
        if board.get("uid") in uids:
            problems.append(f"{where}: uid {board.get('uid')!r} is used twice")
        uids.add(board.get("uid"))
        if "crm" not in board.get("tags", []):
            problems.append(f"{where}: not tagged crm")
        variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
        ds = variables.get("datasource", {})
        if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append(f"{where}: needs a datasource variable of type prometheus")
        ids = set()
        for panel in _panels(board.get("panels", [])):
            title = panel.get("title")
            if panel.get("id") in ids:
                problems.append(f"{where}: panel id {panel.get('id')} is used twice")
            ids.add(panel.get("id"))
            if panel.get("type") == "row":
                continue
            if not panel.get("gridPos"):
                problems.append(f"{where} {title!r}: no gridPos")
            if (panel.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"{where} {title!r}: datasource is not ${{datasource}}")
            if not any(t.get("expr") for t in panel.get("targets") or []):
                problems.append(f"{where} {title!r}: no query")
    return problems


def _promtool(*args: str) -> tuple[bool, str]:
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def promtool_problems(workdir: Path) -> list[str]:
    """promtool on the alert rules, their unit tests, and the dashboards' queries."""
    problems = []
    rules = workdir / EXTRACTED_RULES
    rules.write_text(yaml.safe_dump(_load_rules(), sort_keys=False))
    ok, out = _promtool("check", "rules", str(rules))
    if not ok:
        problems.append(f"promtool check rules {RULES_FILE.relative_to(ROOT)}:\n{out}")
    if not RULE_TESTS:
        problems.append("no rule unit tests (tests/*.test.yaml)")
    for test in RULE_TESTS:   # copied next to the extracted rules they name
        copy = workdir / test.name
        copy.write_text(test.read_text())
        ok, out = _promtool("test", "rules", str(copy))
        if not ok:
            problems.append(f"promtool test rules {test.relative_to(ROOT)}:\n{out}")
    # Dashboard queries as recording rules: promtool parses each one.
    uses = dashboard_uses()
    recorded = workdir / "dashboards.rules.yaml"
    recorded.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query:{n}", "expr": promql(u.expr)} for n, u in enumerate(uses)]}]}))
    ok, out = _promtool("check", "rules", str(recorded))
    if not ok:
        listing = "\n".join(f"  {n}: {u.where}" for n, u in enumerate(uses))
        problems.append(f"dashboard queries that are not valid PromQL:\n{out}\nqueries:\n{listing}")
    return problems


def main() -> int:
    exported = exported_metrics()
    uses = all_uses()
    with tempfile.TemporaryDirectory(prefix="crm-monitoring-") as tmp:
        problems = promtool_problems(Path(tmp))
    problems += dashboard_problems() + metric_problems(uses, exported)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    names = {sel.metric for u in uses for sel in parse(u.expr).selectors}
    external = names & set(EXTERNAL_METRICS)
    print(f"monitoring: {len(rule_uses())} alerts pass promtool check/test rules; "
          f"{len(DASHBOARDS)} dashboards, {len(dashboard_uses())} queries; {len(names)} metrics read, "
          f"all exported by the CRM processes but {len(external)} external ({', '.join(sorted(external))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
