#!/usr/bin/env bash
# The whole test suite: unit, deploy (rendered Kubernetes manifests, no cluster: make
# k8s-check), integration (in-process nameko under eventlet, real broker and database),
# end-to-end (a private stack driven through the gRPC gateway).
#   scripts/test.sh [unit|deploy|integration|e2e|fuzz]...   (default: the first four)
# Starts the local infrastructure if it is not running and stops it again afterwards.
# A user-supplied AMQP_URI / MONGODB_URL is used instead of the local infrastructure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
suites=("$@"); [ ${#suites[@]} -eq 0 ] && suites=(unit deploy integration e2e)
results=var/test-results; rm -rf "$results"; mkdir -p "$results"

started=()   # what this run started, and so stops again
needs_infra() { for s in "${suites[@]}"; do [[ "$s" != unit && "$s" != deploy ]] && return 0; done; return 1; }
if needs_infra && [ -z "${AMQP_URI:-}${MONGODB_URL:-}" ]; then
  before=$(scripts/infra.sh status)
  [[ "$before" == *"rabbitmq: running"* ]] || started+=(rabbitmq)
  [[ "$before" == *"ferretdb: listening"* ]] || started+=(ferretdb)
  scripts/infra.sh up || exit 1
fi
cleanup() { [ ${#started[@]} -gt 0 ] && scripts/infra.sh down "${started[@]}"; true; }
trap cleanup EXIT

status=0
run() {  # run NAME CMD... ; pytest's 5 (nothing collected) is not a failure
  local name=$1; shift
  echo "=== $name tests ==="
  "$@" -p no:cacheprovider --junitxml="$results/$name.xml"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then status=1; fi
}
for s in "${suites[@]}"; do
  case "$s" in
    unit)        run unit .venv/bin/pytest -p no:pytest_nameko tests/unit -q ;;
    deploy)      run deploy scripts/k8s-check.sh -q ;;
    # nameko services need eventlet's monkey patching: `nameko test` applies it before pytest.
    integration)
      # the gateway's own tests run on asyncio (no eventlet), the services' under eventlet;
      # the database compatibility suite races real OS threads (no eventlet either)
      run integration-gateway .venv/bin/pytest -p no:pytest_nameko tests/integration/gateway -q
      run integration-database .venv/bin/pytest -p no:pytest_nameko tests/integration/database -q
      run integration .venv/bin/nameko test tests/integration -q --ignore=tests/integration/gateway \
        --ignore=tests/integration/database ;;
    e2e)         run e2e .venv/bin/pytest -p no:pytest_nameko tests/e2e -q ;;
    # the property test of every public RPC, longer and with a fresh seed (make fuzz)
    fuzz)        export FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-300}" FUZZ_SEED="${FUZZ_SEED:-$RANDOM}"
                 echo "fuzz: $FUZZ_EXAMPLES examples per RPC, FUZZ_SEED=$FUZZ_SEED (set it to replay a run)"
                 run fuzz .venv/bin/pytest -p no:pytest_nameko tests/e2e/test_fuzz.py -q ;;
    *) echo "unknown suite: $s" >&2; exit 2 ;;
  esac
done
.venv/bin/python scripts/test_summary.py "$results"
exit $status
