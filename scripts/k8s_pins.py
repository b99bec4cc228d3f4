"""Every version `make k8s-check` depends on, in one place.

Bumping one of these is the whole upgrade: the binary is rebuilt and the CRD schemas are
fetched again on the next run (nothing downloaded is committed).
"""

# kustomize, built from the Go module proxy into tools/bin. v5.8.3 needs Go >= 1.27; the
# machines have Go 1.26, and v5.8.2 is the newest release that builds with it.
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.8.2"

# The Kubernetes version the rendered objects are validated against (kubernetes-validate's
# strict schemas: an unknown field is an error, as with `kubectl apply --validate=strict`).
KUBERNETES_VERSION = "1.37"

# Custom resources are validated against the operators' own CRDs (their openAPIV3Schema),
# taken from the operators' Go modules: (module@version, CRD files inside the module).
CRD_SOURCES = [
    ("github.com/prometheus-operator/prometheus-operator@v0.85.0", [
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ]),
    ("github.com/kedacore/keda/v2@v2.21.0", [
        "config/crd/bases/keda.sh_scaledobjects.yaml",
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
    ]),
    ("github.com/rabbitmq/cluster-operator/v2@v2.16.0", [
        "config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml",
    ]),
    ("github.com/rabbitmq/messaging-topology-operator@v1.17.4", [
        "config/crd/bases/rabbitmq.com_users.yaml",
        "config/crd/bases/rabbitmq.com_permissions.yaml",
        "config/crd/bases/rabbitmq.com_vhosts.yaml",
        "config/crd/bases/rabbitmq.com_policies.yaml",
    ]),
    ("github.com/mongodb/mongodb-kubernetes-operator@v0.9.0", [
        "config/crd/bases/mongodbcommunity.mongodb.com_mongodbcommunity.yaml",
    ]),
]

# Kinds rendered without any schema to check them against: (apiVersion, kind) -> why.
# Printed on every run; anything else without a schema fails the check.
UNVALIDATED_KINDS: dict[tuple[str, str], str] = {}
