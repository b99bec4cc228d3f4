"""The checkers themselves: a good object passes, and each broken property is reported
(so a green deploy suite means the invariants hold, not that the checks see nothing)."""
import base64
import copy

import pytest

import k8s_schemas
from invariants import (autoscaling_violations, disruption_budget_violations, dockerfile_violations,
                        image_violations, network_policy_violations, pod_violations, reachability_violations,
                        secret_violations, wiring_violations)

LABELS = {"app.kubernetes.io/name": "contacts", "app.kubernetes.io/part-of": "crm"}
SECURE = {"runAsNonRoot": True, "runAsUser": 10001, "readOnlyRootFilesystem": True,
          "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
          "seccompProfile": {"type": "RuntimeDefault"}}
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "contacts", "namespace": "crm"},
    "spec": {"selector": {"matchLabels": LABELS}, "template": {"metadata": {"labels": LABELS}, "spec": {
        "containers": [{
            "name": "contacts", "image": "registry.example.org/crm/contacts:1.0.0",
            "env": [{"name": "METRICS_PORT", "value": "9100"}],
            "ports": [{"name": "metrics", "containerPort": 9100}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
            "securityContext": SECURE}]}}}}
HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "contacts", "namespace": "crm"},
       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "contacts"},
                "minReplicas": 2, "maxReplicas": 4}}
PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "contacts", "namespace": "crm"},
       "spec": {"maxUnavailable": 1, "selector": {"matchLabels": LABELS}}}


def broken(obj, path, value):
    """A deep copy of obj with the dotted path set to value (None deletes it)."""
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return obj


def test_the_good_objects_pass():
    objects = [DEPLOYMENT, HPA, PDB]
    assert pod_violations(DEPLOYMENT) == []
    assert autoscaling_violations(objects) == []
    assert disruption_budget_violations(objects) == []
    assert wiring_violations(objects) == []
    assert image_violations(objects, {"crm-contacts"}) == []
    assert [e for o in objects for e in k8s_schemas.validate(o)] == []


C = "spec.template.spec.containers.0."


@pytest.mark.parametrize("path, value, complaint", [
    (C + "livenessProbe", None, "no livenessProbe"),
    (C + "readinessProbe", None, "no readinessProbe"),
    (C + "resources.limits", {"memory": "1Gi"}, "no limits.cpu"),
    (C + "securityContext.runAsUser", 0, "runAsUser is 0"),
    (C + "securityContext.runAsNonRoot", None, "runAsNonRoot is not true"),
    (C + "securityContext.readOnlyRootFilesystem", False, "readOnlyRootFilesystem"),
    (C + "securityContext.allowPrivilegeEscalation", None, "allowPrivilegeEscalation"),
    (C + "securityContext.capabilities", {"drop": ["NET_RAW"]}, "drop ALL"),
])
def test_pod_checker_reports(path, value, complaint):
    assert any(complaint in v for v in pod_violations(broken(DEPLOYMENT, path, value)))


def test_autoscaling_checker_reports_a_missing_autoscaler_and_fighting_replicas():
    assert "no HorizontalPodAutoscaler" in " ".join(autoscaling_violations([DEPLOYMENT, PDB]))
    assert "sets replicas" in " ".join(autoscaling_violations([broken(DEPLOYMENT, "spec.replicas", 3), HPA]))
    renamed = broken(HPA, "spec.scaleTargetRef.name", "contact")
    assert "not rendered" in " ".join(autoscaling_violations([DEPLOYMENT, renamed]))


def test_budget_checker_reports_a_wrong_selector_and_a_budget_that_blocks_drains():
    other = broken(PDB, "spec.selector.matchLabels", {"app.kubernetes.io/name": "loyalty"})
    assert "no PodDisruptionBudget" in " ".join(disruption_budget_violations([DEPLOYMENT, HPA, other]))
    strict = broken(broken(PDB, "spec.maxUnavailable", None), "spec.minAvailable", 2)
    assert "allows no eviction" in " ".join(disruption_budget_violations([DEPLOYMENT, HPA, strict]))


@pytest.mark.parametrize("image, complaint", [
    ("crm-contacts", "placeholder"), ("crm-contacts:1.0", "placeholder"),
    ("registry.example.org/crm/contacts:latest", ":latest"), ("registry.example.org:5000/crm/contacts", "neither tag"),
])
def test_image_checker_reports(image, complaint):
    assert any(complaint in v for v in image_violations([broken(DEPLOYMENT, C + "image", image)], {"crm-contacts"}))


def test_secret_checker_decodes_data_and_finds_passwords_in_uris():
    secret = {"kind": "Secret", "metadata": {"name": "s"},
              "data": {"AMQP_URI": base64.b64encode(b"amqp://crm:s3cret@rabbitmq:5672/").decode()}}
    assert secret_violations([secret])
    secret["data"]["AMQP_URI"] = base64.b64encode(b"amqp://crm:CHANGE-ME@rabbitmq:5672/").decode()
    assert secret_violations([secret]) == []
    secret["data"]["username"] = base64.b64encode(b"contacts").decode()  # names an account, proves nothing
    assert secret_violations([secret]) == []
    secret["data"]["password"] = base64.b64encode(b"contacts").decode()
    assert "data.password" in " ".join(secret_violations([secret]))
    config = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"URL": "mongodb://crm:hunter2@mongo/"}}
    assert secret_violations([config])
    env = broken(DEPLOYMENT, C + "env", [{"name": "AMQP_URI", "value": "amqp://$(USER):$(PASSWORD)@rabbitmq/"}])
    assert secret_violations([env]) == []


def test_network_checker_reports_open_ingress_and_egress():
    assert "no NetworkPolicy restricts its ingress" in " ".join(network_policy_violations([DEPLOYMENT]))
    open_policy = {"kind": "NetworkPolicy", "metadata": {"name": "open", "namespace": "crm"},
                   "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                            "ingress": [{"from": [{"namespaceSelector": {}}]}], "egress": [{}]}}
    found = " ".join(network_policy_violations([DEPLOYMENT, open_policy]))
    assert "reachable from outside" in found and "connect to every port" in found


def _policy(name, selector, ingress=None, egress=None):
    spec = {"podSelector": {"matchLabels": selector}, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "crm"}, "spec": spec}


def _from(labels, port, key="from"):
    return {key: [{"podSelector": {"matchLabels": labels}}], "ports": [{"port": port, "protocol": "TCP"}]}


RABBITMQ, MONGODB = {"app.kubernetes.io/name": "rabbitmq"}, {"app": "mongodb-svc"}


def test_reachability_checker_wants_both_backing_services_for_a_service_and_only_the_broker_for_the_gateway():
    service = {"app.kubernetes.io/name": "contacts"}
    broker_in = _policy("rabbitmq", RABBITMQ, ingress=[_from(service, 5672)])
    database_in = _policy("mongodb", MONGODB, ingress=[_from(service, 27017)])
    out = _policy("out", service, egress=[_from(RABBITMQ, 5672, "to"), _from(MONGODB, 27017, "to")])
    assert reachability_violations([DEPLOYMENT, broker_in, database_in, out]) == []
    assert "cannot reach mongodb" in " ".join(reachability_violations([DEPLOYMENT, broker_in, out]))
    wrong_port = _policy("out", service, egress=[_from(RABBITMQ, 5672, "to"), _from(MONGODB, 27018, "to")])
    assert "cannot reach mongodb on 27017 (egress" in " ".join(reachability_violations([DEPLOYMENT, broker_in, database_in, wrong_port]))
    gateway = broken(broken(DEPLOYMENT, "metadata.name", "gateway"), "spec.template.metadata.labels",
                     {"app.kubernetes.io/name": "gateway"})
    open_database = _policy("mongodb", MONGODB, ingress=[{"from": [{"podSelector": {}}]}])
    assert "does not need" in " ".join(reachability_violations([gateway, open_database]))


GOOD_DOCKERFILE = """
ARG PYTHON=3.11.11
FROM python:${PYTHON}-slim AS build
COPY . /src
RUN uv sync --frozen --no-dev
FROM python:${PYTHON}-slim
COPY --from=build /src/.venv /app/.venv
USER 10001:10001
ENTRYPOINT ["crm-service"]
"""


@pytest.mark.parametrize("change, complaint", [
    (("USER 10001:10001", "USER app"), "numeric non-root"),
    (('ENTRYPOINT ["crm-service"]', "ENTRYPOINT crm-service"), "shell form"),
    (('["crm-service"]', '["crm-service", "--backdoor", "3000"]'), "--backdoor"),
    (("FROM python:${PYTHON}-slim\n", "FROM python\n"), "not pinned"),
    (("COPY --from=build /src/.venv", "COPY tests"), "test files"),
    (("FROM python:${PYTHON}-slim AS build\n", ""), "stage(s)"),
])
def test_dockerfile_checker_reports(change, complaint):
    assert dockerfile_violations(GOOD_DOCKERFILE) == []
    assert any(complaint in v for v in dockerfile_violations(GOOD_DOCKERFILE.replace(*change)))


def test_crd_schemas_are_strict():
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
              "spec": {"scaleTargetRef": {"name": "contacts"}, "triggers": [{"type": "rabbitmq", "metadata": {}}]}}
    assert k8s_schemas.validate(scaled) == []
    assert "maxReplicaCont" in " ".join(k8s_schemas.validate(broken(scaled, "spec.maxReplicaCont", 3)))
    assert "no schema" in " ".join(k8s_schemas.validate({"apiVersion": "example.org/v1", "kind": "Thing"}))


def test_wiring_checker_reports_a_grpc_probe_on_a_port_the_container_does_not_have():
    probed = broken(DEPLOYMENT, C + "livenessProbe", {"grpc": {"port": 50051}})
    assert "probes gRPC on 50051" in " ".join(wiring_violations([probed]))
    served = broken(probed, C + "ports", [{"name": "metrics", "containerPort": 9100}, {"name": "grpc", "containerPort": 50051}])
    assert wiring_violations([served]) == []
