#!/usr/bin/env bash
# Checks of the monitoring component (deploy/k8s/components/monitoring): alert rules,
# their unit tests, and that every metric a dashboard panel or an alert reads is one the
# CRM processes really export (or a documented external one).
#
#   scripts/check-monitoring.sh install   install promtool if missing (Debian's prometheus package)
#   scripts/check-monitoring.sh           install promtool if missing, then run every check
#
# The checks themselves live in scripts/monitoring_check.py (also used by the e2e tests).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[monitoring] %s\n' "$*" >&2; }

install_promtool() {
  if command -v promtool >/dev/null 2>&1; then return; fi
  log "installing promtool (Debian's prometheus package)"
  export DEBIAN_FRONTEND=noninteractive
  # The package's postinst would start a Prometheus server we do not want: a policy-rc.d
  # that answers 101 makes invoke-rc.d/deb-systemd-invoke skip every start during the
  # install. A machine that already has such a policy keeps its own.
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, scripts/check-monitoring.sh: no service starts\nexit 101\n' > "$policy"
    chmod +x "$policy"; ours=1
  fi
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || rc=$?
  if [ -n "$ours" ]; then rm -f "$policy"; fi
  [ $rc -eq 0 ] || { log "apt-get install prometheus failed"; exit $rc; }
  # Under systemd the unit is still enabled for the next boot: we only want promtool.
  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  command -v promtool >/dev/null 2>&1 || { log "promtool is still missing after the install"; exit 1; }
}

case "${1:-check}" in
  install) install_promtool ;;
  check) install_promtool
         exec "$ROOT/.venv/bin/python" "$ROOT/scripts/monitoring_check.py" ;;
  *) echo "usage: $0 [install|check]" >&2; exit 2 ;;
esac
