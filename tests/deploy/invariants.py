"""The deployment invariants, as checkers that return violations (empty list = holds).

Pure functions over rendered objects (and Dockerfile text), so the tests can also feed them
broken input and see that they complain.
"""
from __future__ import annotations

import base64
import json
import re
import shlex

from crm_common import registry
from kube import (CLUSTER_SCOPED_KINDS, containers, name_of, of_kind, pod_labels, pod_spec,
                  port_numbers, ref, selector_matches, workloads)

REGISTRY = registry.load()   # CRM_REGISTRY may name another file (test_generated.py does)
DEPLOYABLES = tuple(d.name for d in REGISTRY.deployables)
GATEWAY = REGISTRY.gateway.name
NAME_LABEL = "app.kubernetes.io/name"
# The only value a Secret in the repository may carry: a marker the operator replaces.
SECRET_MARKER = "CHANGE-ME"
METRICS_PORT = registry.CLUSTER_METRICS_PORT
GATEWAY_PORT = REGISTRY.gateway.grpc_port


# --- pods -----------------------------------------------------------------------------

def pod_violations(deployment: dict) -> list[str]:
    """Probes, requests and limits, and a restricted security context on every container."""
    found = []
    pod = pod_spec(deployment)
    pod_security = pod.get("securityContext") or {}
    init_names = {c.get("name") for c in pod.get("initContainers") or []}
    for container in containers(deployment):
        where = f"{ref(deployment)} container {container.get('name')}"
        if container.get("name") not in init_names:  # init containers cannot have probes
            for probe in ("livenessProbe", "readinessProbe"):
                if not container.get(probe):
                    found.append(f"{where}: no {probe}")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(bound) or {}).get(resource):
                    found.append(f"{where}: no {bound}.{resource}")
        security = container.get("securityContext") or {}
        effective = lambda key: security.get(key, pod_security.get(key))  # noqa: E731 - container wins
        if effective("runAsNonRoot") is not True:
            found.append(f"{where}: runAsNonRoot is not true")
        user = effective("runAsUser")
        if not isinstance(user, int) or user <= 0:
            found.append(f"{where}: runAsUser is {user!r}, not a non-zero uid")
        if security.get("readOnlyRootFilesystem") is not True:
            found.append(f"{where}: readOnlyRootFilesystem is not true")
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation is not false")
        if security.get("privileged"):
            found.append(f"{where}: privileged")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            found.append(f"{where}: capabilities do not drop ALL")
        # the `restricted` Pod Security Standard also wants a seccomp profile
        seccomp = (effective("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault")
    return found


# --- scaling and disruption -----------------------------------------------------------

def _autoscalers_by_target(objects: list[dict]) -> dict[str, list[str]]:
    """Deployment name -> the HPAs and ScaledObjects that scale it."""
    targets: dict[str, list[str]] = {}
    for obj in of_kind(objects, "HorizontalPodAutoscaler") + of_kind(objects, "ScaledObject"):
        target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
        # a ScaledObject's kind/apiVersion default to Deployment apps/v1; an HPA must say them
        default_kind = "Deployment" if obj["kind"] == "ScaledObject" else None
        if target.get("kind", default_kind) == "Deployment" and target.get("apiVersion", "apps/v1") == "apps/v1":
            targets.setdefault(target.get("name"), []).append(ref(obj))
    return targets


def minimum_replicas(deployment: dict, objects: list[dict]) -> int:
    """The fewest pods the Deployment runs when nothing is wrong (autoscaler floor or replicas)."""
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        if (hpa["spec"].get("scaleTargetRef") or {}).get("name") == name_of(deployment):
            return hpa["spec"].get("minReplicas", 1)
    for scaled in of_kind(objects, "ScaledObject"):
        if (scaled["spec"].get("scaleTargetRef") or {}).get("name") == name_of(deployment):
            return scaled["spec"].get("minReplicaCount", 0)
    return (deployment.get("spec") or {}).get("replicas", 1)


def autoscaling_violations(objects: list[dict]) -> list[str]:
    """Every Deployment has exactly one autoscaler, and leaves `replicas` to it.

    Our choice: a Deployment under an autoscaler sets no spec.replicas at all, in every
    overlay. With a value there, each `kubectl apply` resets the Deployment to it and the
    autoscaler scales it back: a rollout would briefly shrink a scaled-out service.
    """
    found = []
    targets = _autoscalers_by_target(objects)
    deployments = {name_of(d): d for d in of_kind(objects, "Deployment")}
    for name, deployment in deployments.items():
        scalers = targets.get(name, [])
        if not scalers:
            found.append(f"Deployment/{name}: no HorizontalPodAutoscaler or ScaledObject targets it")
        elif len(scalers) > 1:
            found.append(f"Deployment/{name}: scaled by {', '.join(scalers)} at once; they would fight")
        elif "replicas" in (deployment.get("spec") or {}):
            found.append(f"Deployment/{name}: sets replicas while {scalers[0]} scales it")
    for name, scalers in targets.items():
        if name not in deployments:
            found.append(f"{', '.join(scalers)}: targets Deployment/{name}, which is not rendered")
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            found.append(f"{ref(hpa)}: minReplicas above maxReplicas")
    for scaled in of_kind(objects, "ScaledObject"):
        if scaled["spec"].get("minReplicaCount", 0) > scaled["spec"].get("maxReplicaCount", 100):
            found.append(f"{ref(scaled)}: minReplicaCount above maxReplicaCount")
    return found


def _allows_a_disruption(pdb: dict, replicas: int) -> bool:
    spec = pdb.get("spec") or {}
    if "maxUnavailable" in spec:
        return spec["maxUnavailable"] not in (0, "0%")
    wanted = spec.get("minAvailable", 1)
    if isinstance(wanted, str):  # a percentage rounds up: anything under 100% lets one go at 2+ pods
        return wanted != "100%" and replicas >= 2
    return wanted < replicas


def disruption_budget_violations(objects: list[dict]) -> list[str]:
    """Each Deployment has one PDB selecting exactly its pods, one that lets a node drain."""
    found = []
    deployments = of_kind(objects, "Deployment")
    budgets = of_kind(objects, "PodDisruptionBudget")
    namespace = lambda obj: (obj.get("metadata") or {}).get("namespace")  # noqa: E731
    for pdb in budgets:
        selected = [d for d in deployments if namespace(d) == namespace(pdb)
                    and selector_matches((pdb.get("spec") or {}).get("selector"), pod_labels(d))]
        if len(selected) != 1:
            found.append(f"{ref(pdb)}: selects the pods of {len(selected)} Deployments "
                         f"({', '.join(map(name_of, selected)) or 'none'}), not one")
    for deployment in deployments:
        mine = [p for p in budgets if namespace(p) == namespace(deployment)
                and selector_matches((p.get("spec") or {}).get("selector"), pod_labels(deployment))]
        if not mine:
            found.append(f"{ref(deployment)}: no PodDisruptionBudget selects its pods")
        replicas = minimum_replicas(deployment, objects)
        for pdb in mine:
            if replicas > 0 and not _allows_a_disruption(pdb, replicas):
                found.append(f"{ref(pdb)}: allows no eviction at {replicas} replica(s): a node drain would hang")
    return found


# --- images -----------------------------------------------------------------------------

def split_image(image: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference (the tag colon comes after the last slash)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    if ":" in name[slash + 1:]:
        name, tag = name.rsplit(":", 1)
        return name, tag, digest or None
    return name, None, digest or None


def image_violations(objects: list[dict], placeholders: set[str]) -> list[str]:
    """Every image was set by the overlay (no base placeholder left) and is pinned."""
    found = []
    for workload in workloads(objects):
        for container in containers(workload):
            image = container.get("image", "")
            name, tag, digest = split_image(image)
            where = f"{ref(workload)} container {container.get('name')}: image {image!r}"
            if name in placeholders:
                found.append(f"{where} is the base placeholder; the overlay's `images:` must set it")
            if not tag and not digest:
                found.append(f"{where} has neither tag nor digest")
            if tag == "latest":
                found.append(f"{where} uses :latest")
    return found


# --- secrets and credentials ------------------------------------------------------------

# scheme://user:password@ with a password that is neither the marker nor a $(VAR) reference
_URI_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@]*:([^\s/@]+)@", re.IGNORECASE)


def literal_credentials(value: str) -> bool:
    return any(SECRET_MARKER not in password and not re.fullmatch(r"(\$\([A-Za-z0-9_]+\))+", password)
               for password in _URI_PASSWORD.findall(value))


# Keys that name an account rather than prove it: a plain value there is no secret.
IDENTIFIER_KEYS = ("username", "user")


def secret_value_violations(where: str, value: str) -> list[str]:
    if SECRET_MARKER in value or where.rsplit(".", 1)[-1].rsplit(" ", 1)[-1] in IDENTIFIER_KEYS:
        return []
    return [f"{where}: carries a value without the {SECRET_MARKER} marker"]


def secret_violations(objects: list[dict]) -> list[str]:
    """No Secret carries a real value; no ConfigMap or literal env var carries a password."""
    found = []
    for secret in of_kind(objects, "Secret"):
        for key, encoded in (secret.get("data") or {}).items():
            value = base64.b64decode(encoded).decode("utf-8", "replace")
            found += secret_value_violations(f"{ref(secret)} data.{key}", value)
        for key, value in (secret.get("stringData") or {}).items():
            found += secret_value_violations(f"{ref(secret)} stringData.{key}", str(value))
    for config in of_kind(objects, "ConfigMap"):
        for key, value in (config.get("data") or {}).items():
            if literal_credentials(str(value)):
                found.append(f"{ref(config)} data.{key}: a URI with a password (credentials go in a Secret)")
    for workload in workloads(objects):
        for container in containers(workload):
            for entry in container.get("env") or []:
                if literal_credentials(str(entry.get("value", ""))):
                    found.append(f"{ref(workload)} env {entry['name']}: a literal URI with a password")
    return found


def generator_inputs(kustomization: dict, read) -> list[tuple[str, str]]:
    """(where, value) for every value a secretGenerator would put in a Secret.

    `read(path)` returns a file's text relative to the kustomization's folder."""
    values = []
    for generator in kustomization.get("secretGenerator") or []:
        name = generator.get("name")
        for literal in generator.get("literals") or []:
            key, _, value = literal.partition("=")
            values.append((f"secretGenerator {name} literal {key}", value))
        for source in generator.get("files") or []:
            key, _, path = source.rpartition("=")
            values.append((f"secretGenerator {name} file {path}", read(path)))
        for path in generator.get("envs") or ([generator["env"]] if generator.get("env") else []):
            for line in read(path).splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    values.append((f"secretGenerator {name} {path} {key.strip()}", value))
    return values


# --- network policies ---------------------------------------------------------------------

EGRESS_ALLOWED = {  # what a deployable may open connections to: DNS, the broker, the database
    GATEWAY: {53, 5671, 5672, "dns", "dns-tcp", "amqp", "amqps"},
    None: {53, 5671, 5672, 27017, "dns", "dns-tcp", "amqp", "amqps", "mongodb"},
}


def _policy_types(policy: dict) -> list[str]:
    spec = policy.get("spec") or {}
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def _from_outside(peers: list[dict] | None, namespace: str) -> bool:
    """Whether a rule's peers admit anything outside the namespace (no peers = everything)."""
    if not peers:
        return True
    for peer in peers:
        if "ipBlock" in peer:
            return True
        if "namespaceSelector" in peer:
            own = {"kubernetes.io/metadata.name": namespace}
            selector = peer["namespaceSelector"] or {}
            if selector.get("matchLabels") != own or selector.get("matchExpressions"):
                return True
    return False


def _ports(rule: dict) -> list | None:
    """The ports a rule opens (a number or a port name each); None = every port."""
    ports = rule.get("ports")
    if not ports or any("port" not in port for port in ports):
        return None
    return [port["port"] for port in ports]


def network_policy_violations(objects: list[dict]) -> list[str]:
    """Only the gateway takes traffic from outside the namespace (besides metrics scrapes);
    the deployables connect only to DNS, RabbitMQ and (the services) MongoDB."""
    found = []
    policies = of_kind(objects, "NetworkPolicy")
    for deployment in of_kind(objects, "Deployment"):
        app = pod_labels(deployment).get(NAME_LABEL)
        namespace = deployment["metadata"].get("namespace")
        selecting = [p for p in policies if p["metadata"].get("namespace") == namespace
                     and selector_matches((p.get("spec") or {}).get("podSelector"), pod_labels(deployment))]
        ingress = [rule for p in selecting if "Ingress" in _policy_types(p) for rule in p["spec"].get("ingress") or []]
        if not any("Ingress" in _policy_types(p) for p in selecting):
            found.append(f"{ref(deployment)}: no NetworkPolicy restricts its ingress")
        reachable = False
        for rule in ingress:
            if not _from_outside(rule.get("from"), namespace):
                continue
            ports = _ports(rule)
            if app == GATEWAY:
                reachable |= ports is None or bool({"grpc", GATEWAY_PORT} & set(ports))
            elif ports is None or not set(ports) <= {"metrics", METRICS_PORT}:
                found.append(f"{ref(deployment)}: reachable from outside the namespace on "
                             f"{'every port' if ports is None else ports} (only the gateway may be)")
        if app == GATEWAY and not reachable:
            found.append(f"{ref(deployment)}: the gateway is not reachable from outside the namespace on grpc")
        if not any("Egress" in _policy_types(p) for p in selecting):
            found.append(f"{ref(deployment)}: no NetworkPolicy restricts its egress")
        external = set(REGISTRY.deployable(app).egress) if app in DEPLOYABLES else set()   # the registry's `egress`
        allowed = EGRESS_ALLOWED.get(app, EGRESS_ALLOWED[None]) | external
        for p in selecting:
            if "Egress" not in _policy_types(p):
                continue
            for rule in p["spec"].get("egress") or []:
                ports = _ports(rule)
                if ports is None or not set(ports) <= allowed:
                    found.append(f"{ref(deployment)}: {ref(p)} lets it connect to "
                                 f"{'every port' if ports is None else ports}")
                elif not set(ports) <= {53, "dns", "dns-tcp"} | external and \
                        any("ipBlock" in peer for peer in rule.get("to") or [{}]):
                    found.append(f"{ref(deployment)}: {ref(p)} lets it reach {ports} on any address, not just in-cluster")
    return found


# What each kind of deployable must reach, and nothing else may: the broker's and the
# database's pods (as their operators label them) and their client ports.
BACKING_SERVICES = {
    "rabbitmq": ({"app.kubernetes.io/name": "rabbitmq"}, 5672, {"service", "gateway"}),
    "mongodb": ({"app": "mongodb-svc"}, 27017, {"service"}),
}


def _peer_admits(peers: list[dict] | None, labels: dict) -> bool:
    """Whether a rule's peers admit pods with these labels in the policy's own namespace."""
    return any("podSelector" in peer and "namespaceSelector" not in peer
               and selector_matches(peer["podSelector"], labels) for peer in peers or [])


def _opens(rule: dict, port: int) -> bool:
    ports = _ports(rule)
    return ports is None or port in ports


def reachability_violations(objects: list[dict]) -> list[str]:
    """With NetworkPolicies: each service reaches RabbitMQ and MongoDB, the gateway RabbitMQ
    only (ingress of the backing service's pods and egress of the deployable's)."""
    found = []
    policies = of_kind(objects, "NetworkPolicy")
    for deployment in of_kind(objects, "Deployment"):
        labels = pod_labels(deployment)
        name = labels.get(NAME_LABEL)
        kind = REGISTRY.deployable(name).kind if name in DEPLOYABLES else None
        for backing, (backing_labels, port, who) in BACKING_SERVICES.items():
            ingress = any(selector_matches(p["spec"].get("podSelector"), backing_labels)
                          and _opens(rule, port) and _peer_admits(rule.get("from"), labels)
                          for p in policies if "Ingress" in _policy_types(p) for rule in p["spec"].get("ingress") or [])
            egress = any(selector_matches(p["spec"].get("podSelector"), labels)
                         and _opens(rule, port) and _peer_admits(rule.get("to"), backing_labels)
                         for p in policies if "Egress" in _policy_types(p) for rule in p["spec"].get("egress") or [])
            if kind in who and not (ingress and egress):
                found.append(f"{ref(deployment)}: cannot reach {backing} on {port} "
                             f"({'egress' if ingress else 'ingress of ' + backing} not allowed)")
            if kind not in who and ingress:
                found.append(f"{ref(deployment)}: {backing} admits it on {port}, which it does not need")
    return found


# --- namespaces and wiring ------------------------------------------------------------------

def namespace_violations(objects: list[dict]) -> list[str]:
    found = [f"{ref(obj)}: no namespace" for obj in objects
             if obj.get("kind") not in CLUSTER_SCOPED_KINDS and not (obj.get("metadata") or {}).get("namespace")]
    spaces = {d["metadata"].get("namespace") for d in of_kind(objects, "Deployment")}
    if len(spaces) > 1:
        found.append(f"the deployables are spread over namespaces {sorted(map(str, spaces))}")
    return found


def _env(container: dict, objects: list[dict]) -> dict[str, str]:
    """A container's literal environment: envFrom ConfigMaps, then env values."""
    values: dict[str, str] = {}
    maps = {name_of(c): c.get("data") or {} for c in of_kind(objects, "ConfigMap")}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            values.update(maps.get(source["configMapRef"].get("name"), {}))
    for entry in container.get("env") or []:
        if "value" in entry:
            values[entry["name"]] = entry["value"]
    return values


def wiring_violations(objects: list[dict]) -> list[str]:
    """Ports, probes and Services line up with the processes' contract (METRICS_PORT=9100
    on port `metrics`, the gateway on 0.0.0.0:50051 as port `grpc`)."""
    found = []
    for deployment in of_kind(objects, "Deployment"):
        for container in containers(deployment, init=False):
            where = f"{ref(deployment)} container {container.get('name')}"
            ports, env = port_numbers(container), _env(container, objects)
            if ports.get("metrics") != METRICS_PORT or env.get("METRICS_PORT") != str(METRICS_PORT):
                found.append(f"{where}: metrics must be port `metrics` {METRICS_PORT} with METRICS_PORT={METRICS_PORT}")
            if pod_labels(deployment).get(NAME_LABEL) == GATEWAY and (
                    ports.get("grpc") != GATEWAY_PORT or env.get("GATEWAY_ADDR") != f"0.0.0.0:{GATEWAY_PORT}"):
                found.append(f"{where}: the gateway must listen on 0.0.0.0:{GATEWAY_PORT} as port `grpc`")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                for handler in ("httpGet", "tcpSocket"):
                    port = ((container.get(probe) or {}).get(handler) or {}).get("port")
                    if isinstance(port, str) and port not in ports:
                        found.append(f"{where}: {probe} uses port {port!r}, which the container does not name")
                grpc_port = ((container.get(probe) or {}).get("grpc") or {}).get("port")
                if grpc_port is not None and grpc_port not in ports.values():
                    found.append(f"{where}: {probe} probes gRPC on {grpc_port}, which is not a port of the container")
    pods = [(w["metadata"].get("namespace"), pod_labels(w), w) for w in workloads(objects)]
    for service in of_kind(objects, "Service"):
        selector = (service.get("spec") or {}).get("selector") or {}
        chosen = [w for ns, labels, w in pods if ns == service["metadata"].get("namespace")
                  and selector and all(labels.get(k) == v for k, v in selector.items())]
        if selector and not chosen:
            continue  # pods an operator makes (RabbitMQ, MongoDB) are not in the render
        for port in (service.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for workload in chosen:
                named = {n: p for c in containers(workload, init=False) for n, p in port_numbers(c).items()}
                if target not in named and target not in named.values():
                    found.append(f"{ref(service)}: targetPort {target!r} is not a port of {ref(workload)}")
        if (service.get("spec") or {}).get("type") in ("LoadBalancer", "NodePort") and not any(
                pod_labels(w).get(NAME_LABEL) == GATEWAY for w in chosen):
            found.append(f"{ref(service)}: exposed outside the cluster but it is not the gateway")
    return found


def scrape_violations(objects: list[dict]) -> list[str]:
    """With monitoring on, a PodMonitor scrapes every deployable's `metrics` port."""
    monitors = of_kind(objects, "PodMonitor")
    found = []
    for deployment in of_kind(objects, "Deployment"):
        named = {n for c in containers(deployment, init=False) for n in port_numbers(c)}
        if not any(selector_matches(m["spec"].get("selector"), pod_labels(deployment))
                   and any(e.get("port") in named for e in m["spec"].get("podMetricsEndpoints") or [])
                   for m in monitors):
            found.append(f"{ref(deployment)}: no PodMonitor scrapes a port it has")
    return found


# --- Dockerfiles ---------------------------------------------------------------------------

# what has no business in a runtime image: compilers, build and VCS tools, the test suite
_BUILD_ONLY = re.compile(r"(^|[\s/])(gcc|g\+\+|build-essential|make|git|uv|uvx|grpcio-tools|tests?|bench)(/|\s|$)")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def dockerfile_violations(text: str) -> list[str]:
    """Multi-stage; the final stage runs as a numeric non-root user, in exec form, with no
    build tools, tests or nameko backdoor in it; every base image is pinned."""
    found = []
    if "--backdoor" in text:
        found.append("mentions --backdoor (a nameko debug shell port)")
    instructions = dockerfile_instructions(text)
    args = {}
    for instruction, rest in instructions:
        if instruction == "FROM":
            break
        if instruction == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip().strip('"')
    stages, names = [], set()
    for instruction, rest in instructions:
        if instruction == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            if image not in names:
                _, tag, digest = split_image(image)
                if (not tag and not digest) or tag == "latest":
                    found.append(f"FROM {words[0]}: base image not pinned to a tag or digest")
            if len(words) >= 3 and words[1].upper() == "AS":
                names.add(words[2])
            stages.append([])
        elif stages:
            stages[-1].append((instruction, rest))
    if len(stages) < 2:
        found.append(f"{len(stages)} stage(s): build in one stage, copy only the result into the final one")
    final = stages[-1] if stages else []
    users = [rest for instruction, rest in final if instruction == "USER"]
    uid = users[-1].split(":")[0] if users else ""
    if not uid.isdigit() or int(uid) == 0:
        found.append(f"final stage USER is {uid or 'unset'!r}, not a numeric non-root uid")
    starts = [(instruction, rest) for instruction, rest in final if instruction in ("ENTRYPOINT", "CMD")]
    if not starts:
        found.append("final stage has no ENTRYPOINT or CMD")
    for instruction, rest in starts:
        try:
            exec_form = isinstance(json.loads(rest), list)
        except ValueError:
            exec_form = False
        if not exec_form:
            found.append(f"{instruction} {rest}: shell form; SIGTERM would reach a shell, not the process")
    for instruction, rest in final:
        if instruction in ("COPY", "ADD"):
            sources = [w for w in shlex.split(rest) if not w.startswith("--")][:-1]
            for source in sources:
                if source.rstrip("/") in (".", ""):
                    found.append(f"final stage {instruction} {source}: the whole build context in the runtime image")
                elif _BUILD_ONLY.search(" " + source.strip("/") + " "):
                    found.append(f"final stage {instruction} {source}: build tool or test files in the runtime image")
        if instruction == "RUN" and re.search(r"\b(apt-get|apk|yum|dnf)\b.*\binstall\b", rest) and _BUILD_ONLY.search(rest):
            found.append(f"final stage RUN {rest[:80]}: installs build tools into the runtime image")
    return found
