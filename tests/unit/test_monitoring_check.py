"""The PromQL reading behind scripts/check-monitoring.sh: what a query reads, and the
problems it reports (a metric or label nobody exports, a gRPC code that does not exist)."""
from __future__ import annotations

import sys

from support.infra import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import monitoring_check as mc  # noqa: E402
from monitoring_check import Matcher, Selector, Use  # noqa: E402


def test_parse_finds_selectors_and_grouping_but_not_functions_keywords_or_durations():
    q = mc.parse('histogram_quantile(0.99, sum by (le, grpc_method) (rate(x_bucket{a="1", b=~"p|q"}[$__rate_interval])))'
                 ' / on (pod) group_left (node) y offset 5m > bool 1e3 and sum(z) without (c)')
    assert q.selectors == [Selector("x_bucket", (Matcher("a", "=", "1"), Matcher("b", "=~", "p|q"))),
                           Selector("y"), Selector("z")]
    assert q.grouping == {"le", "grpc_method", "pod", "node", "c"}
    assert mc.parse('{__name__="m", job!="x"}').selectors[0].metric == "m"
    assert mc.parse('rate(m{s="a\\"b"}[5m])').selectors[0].matchers == (Matcher("s", "=", 'a"b'),)


def test_matchers_are_anchored_like_promql():
    assert Matcher("q", "=~", "rpc-.+|evt-.+").matches({"q": "evt-contacts-x"})
    assert not Matcher("q", "=~", "rpc-.+").matches({"q": "rpc.reply-gateway-1"})
    assert Matcher("q", "!~", "rpc-.+").matches({})
    assert Matcher("code", "!=", "OK").matches({"code": "NotFound"})


def test_metric_problems_names_unknown_metrics_labels_and_grpc_codes():
    exported = {"crm_rpc_requests_total": {"service", "method", "outcome"},
                "grpc_server_handled_total": {"grpc_code", "grpc_method"}}
    uses = [Use("ok", 'sum by (service, namespace) (rate(crm_rpc_requests_total{outcome="ok"}[5m]))'),
            Use("ok-external", 'sum by (queue) (rabbitmq_queue_messages_ready) and up == 0'),
            Use("typo", "crm_rpc_request_total"),
            Use("label", 'crm_rpc_requests_total{outcom="ok"}'),
            Use("group", "sum by (methd) (crm_rpc_requests_total)"),
            Use("code", 'grpc_server_handled_total{grpc_code=~"Internal|UNAVAILABLE"}')]
    problems = mc.metric_problems(uses, exported)
    assert [p.split(":")[0] for p in problems] == ["typo", "label", "group", "code"]
    assert "'UNAVAILABLE' is no gRPC code as the gateway spells it" in problems[-1]


def test_grafana_intervals_become_durations_for_promtool():
    assert mc.promql("rate(m[$__rate_interval]) + rate(m[${__interval}])") == "rate(m[5m]) + rate(m[5m])"
