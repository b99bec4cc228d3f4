#!/usr/bin/env bash
# make k8s-check: the proof that deploy/ is deployable, without a cluster.
#   - kustomize (pinned in scripts/k8s_pins.py) is built into tools/bin if missing
#   - tests/deploy renders every overlay and component with it (var/k8s/<variant>.yaml),
#     validates every object against Kubernetes' and the operators' CRD schemas, asserts
#     the invariants (read from the registry), checks the files scripts/k8s_generate.py
#     writes are up to date, runs the same on a copy generated for a registry with one more
#     service, and runs scripts/check-monitoring.sh (promtool, dashboards' metrics)
#
#   scripts/k8s-check.sh [PYTEST_ARGS...]      (scripts/test.sh adds --junitxml)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

.venv/bin/python -c 'import sys; sys.path.insert(0, "scripts"); import k8s_render; k8s_render.ensure_kustomize()' || exit 1
scripts/check-monitoring.sh install || exit 1
exec .venv/bin/pytest -p no:pytest_nameko tests/deploy "$@"
