"""Invariants of the rendered workloads: probes, resources, non-root, PDB and autoscaler,
namespaces, and ports that match the processes' contract."""
import pytest
from conftest import variant_names

from invariants import (autoscaling_violations, disruption_budget_violations, namespace_violations,
                        pod_violations, scrape_violations, wiring_violations, DEPLOYABLES, NAME_LABEL)
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
def test_with_keda_the_services_scale_on_their_queues(objects):
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in of_kind(objects, "ScaledObject")}
    services = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")
                if pod_labels(d).get(NAME_LABEL) not in ("gateway", None)}
    assert services <= scaled, f"not scaled by KEDA: {sorted(services - scaled)}"
