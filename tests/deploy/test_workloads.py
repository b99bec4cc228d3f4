"""Invariants of the rendered workloads: probes, resources, non-root, PDB and autoscaler,
namespaces, and ports that match the processes' contract."""
import warnings

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


def consumed_queues() -> dict[str, set[str]]:
    """Service name -> the RabbitMQ queues it consumes, from the real nameko entrypoints of
    every service in the crm.services entry points (nameko's own queue naming)."""
    from importlib.metadata import entry_points

    with warnings.catch_warnings():  # nameko imports eventlet, which warns it is deprecated
        warnings.simplefilter("ignore")
        from nameko.events import EventHandler
        services = [entry.load() for entry in entry_points(group="crm.services")]
    queues = {}
    for service in services:
        queues[service.name] = {f"rpc-{service.name}"} | {
            f"evt-{handler.source_service}-{handler.event_type}--{service.name}.{attribute}"
            for attribute in dir(service)
            for handler in getattr(getattr(service, attribute), "nameko_entrypoints", ()) or ()
            if isinstance(handler, EventHandler)}
    return queues


@pytest.mark.parametrize("variant", variant_names("keda"))
def test_with_keda_each_service_scales_on_every_queue_it_consumes(objects):
    scaled = {o["spec"]["scaleTargetRef"]["name"]: {t["metadata"].get("queueName") for t in o["spec"]["triggers"]
                                                    if t["type"] == "rabbitmq"}
              for o in of_kind(objects, "ScaledObject")}
    expected = consumed_queues()
    assert expected, "no service found in the crm.services entry points"
    assert scaled == expected
