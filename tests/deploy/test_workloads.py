"""Invariants of the rendered workloads: probes, resources, non-root, PDB and autoscaler,
namespaces, and ports that match the processes' contract."""
import pytest
from conftest import variant_names

from invariants import (autoscaling_violations, disruption_budget_violations, namespace_violations,
                        pod_violations, scrape_violations, wiring_violations, DEPLOYABLES, NAME_LABEL, REGISTRY)
from kube import of_kind, pod_labels


def test_every_deployable_is_deployed(objects):
    deployed = {pod_labels(d).get(NAME_LABEL) for d in of_kind(objects, "Deployment")}
    assert set(DEPLOYABLES) <= deployed


def test_every_container_has_probes_resources_and_a_restricted_security_context(objects):
    found = [v for deployment in of_kind(objects, "Deployment") for v in pod_violations(deployment)]
    assert not found, "\n".join(found)


def test_every_deployment_has_one_autoscaler_and_leaves_replicas_to_it(objects):
    found = autoscaling_violations(objects)
    assert not found, "\n".join(found)


def test_every_deployment_has_a_disruption_budget_that_lets_a_node_drain(objects):
    found = disruption_budget_violations(objects)
    assert not found, "\n".join(found)


def test_every_namespaced_object_has_a_namespace(objects):
    found = namespace_violations(objects)
    assert not found, "\n".join(found)


def test_ports_probes_and_services_match_the_process_contract(objects):
    found = wiring_violations(objects)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("variant", variant_names("monitoring"))
def test_with_monitoring_every_deployable_is_scraped(objects):
    found = scrape_violations(objects)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("variant", variant_names("keda"))
def test_with_keda_each_service_scales_on_every_queue_it_consumes(objects):
    scaled = {o["spec"]["scaleTargetRef"]["name"]: [t["metadata"].get("queueName") for t in o["spec"]["triggers"]
                                                    if t["type"] == "rabbitmq"]
              for o in of_kind(objects, "ScaledObject")}
    assert scaled == {s.name: list(s.queues) for s in REGISTRY.services}
    for o in of_kind(objects, "ScaledObject"):
        names = [t.get("name") for t in o["spec"]["triggers"] if t["type"] == "rabbitmq"]
        assert len(set(names)) == len(names), f"{o['metadata']['name']}: two triggers share a name: {names}"


def test_the_base_scales_each_deployable_within_its_registry_bounds(base):
    bounds = {h["spec"]["scaleTargetRef"]["name"]: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"])
              for h in of_kind(base, "HorizontalPodAutoscaler")}
    assert bounds == {d.name: d.replicas for d in REGISTRY.deployables}


@pytest.mark.parametrize("variant", variant_names("keda"))
def test_with_keda_the_services_keep_their_registry_maximum(objects):
    bounds = {o["spec"]["scaleTargetRef"]["name"]: (o["spec"]["minReplicaCount"], o["spec"]["maxReplicaCount"])
              for o in of_kind(objects, "ScaledObject")}
    for service in REGISTRY.services:
        low, high = bounds[service.name]
        assert high == service.replicas[1] and 1 <= low <= high, f"{service.name}: {low}..{high}"


# The gateway's settings base/kustomization.yaml sets for every cluster.
CLUSTER_VALUES = {"GATEWAY_GRACE", "AUTH_JWKS_FILE", "AUTH_API_KEYS_FILE"}


def test_each_configmap_holds_the_common_settings_and_the_registry_settings(base):
    """Every key of a deployable's ConfigMap is a setting the process reads: what every
    deployable of its kind gets, and the registry's `settings` (their defaults as values),
    but not those the registry lists as `secrets` (they are the Secret's)."""
    maps = {c["metadata"]["name"].rsplit("-", 1)[0]: c.get("data") or {} for c in of_kind(base, "ConfigMap")}
    for d in REGISTRY.deployables:
        data = maps[f"{d.name}-config"]
        settings = {k: v for k, v in d.settings.items() if k not in d.secrets}
        for key, default in settings.items():
            if d.kind == "gateway" and key in CLUSTER_VALUES:
                continue   # set for the cluster in base/kustomization.yaml
            assert data.get(key) == default, f"{d.name}-config {key}={data.get(key)!r}, the registry says {default!r}"
        common = {"METRICS_ADDR", "METRICS_PORT", "LOG_LEVEL"} | ({"GATEWAY_ADDR"} if d.kind == "gateway" else
                                                 {"MONGODB_DATABASE", "MAX_WORKERS", "HANDLED_EVENTS_RETENTION_DAYS"})
        assert set(data) == common | set(settings), f"{d.name}-config: {sorted(set(data) ^ (common | set(settings)))}"
        if d.kind == "service":
            assert data["MONGODB_DATABASE"] == d.database


def test_every_deployment_reads_its_own_configmap_and_credentials(objects):
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            maps = [s["configMapRef"]["name"] for s in container.get("envFrom") or [] if "configMapRef" in s]
            assert [m.rsplit("-", 1)[0] for m in maps] == [f"{name}-config"]
            secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env") or [] if "valueFrom" in e}
            assert secrets == {f"{name}-credentials"}
            keys = {e["name"] for e in container.get("env") or [] if "valueFrom" in e}
            wanted = {"AMQP_URI", "CRM_INTERNAL_SECRET"} | ({"MONGODB_URL"} if REGISTRY.deployable(name).kind == "service"
                                                           else set()) | set(REGISTRY.deployable(name).secrets)
            assert keys == wanted, f"{name} reads {sorted(keys)} from its Secret"
