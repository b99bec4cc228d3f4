"""Small queries over rendered Kubernetes objects (plain dicts from `kustomize build`)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

# Cluster-scoped kinds that may appear in a render; every other kind is namespaced.
CLUSTER_SCOPED_KINDS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
    "StorageClass", "PersistentVolume", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "ClusterTriggerAuthentication", "IngressClass",
}


def name_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def ref(obj: dict) -> str:
    return f"{obj.get('kind')}/{name_of(obj)}"


def of_kind(objects: Iterable[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj.get("kind") == kind]


def pod_template(workload: dict) -> dict:
    spec = workload.get("spec") or {}
    if workload.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return spec.get("template") or {}


def pod_labels(workload: dict) -> dict:
    return (pod_template(workload).get("metadata") or {}).get("labels") or {}


def pod_spec(workload: dict) -> dict:
    return pod_template(workload).get("spec") or {}


def containers(workload: dict, init: bool = True) -> Iterator[dict]:
    spec = pod_spec(workload)
    yield from spec.get("containers") or []
    if init:
        yield from spec.get("initContainers") or []


def workloads(objects: Iterable[dict]) -> list[dict]:
    return [obj for obj in objects if obj.get("kind") in WORKLOAD_KINDS | {"CronJob"}]


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A metav1.LabelSelector against a label set; an empty selector selects everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def env_value(container: dict, name: str) -> dict | None:
    """The env entry NAME of a container (its `value` or `valueFrom`), None when absent."""
    for entry in container.get("env") or []:
        if entry.get("name") == name:
            return entry
    return None


def port_numbers(container: dict) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports") or [] if "name" in port}
