"""With the network-policies component: only the gateway is reachable from outside the
namespace, and the deployables connect only to DNS, RabbitMQ and MongoDB."""
import pytest
from conftest import variant_names

from invariants import network_policy_violations, reachability_violations
from kube import of_kind


@pytest.mark.parametrize("variant", variant_names("network-policies"))
def test_only_the_gateway_is_reachable_and_egress_is_broker_database_and_dns(objects):
    assert of_kind(objects, "NetworkPolicy"), "the network-policies component renders no NetworkPolicy"
    found = network_policy_violations(objects)
    assert not found, "\n".join(found)


def test_some_variant_has_network_policies():
    assert variant_names("network-policies"), "no variant includes the network-policies component"


@pytest.mark.parametrize("variant", variant_names("network-policies"))
def test_each_service_reaches_the_broker_and_the_database_and_the_gateway_only_the_broker(objects):
    found = reachability_violations(objects)
    assert not found, "\n".join(found)
