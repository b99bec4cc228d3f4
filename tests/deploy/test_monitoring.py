"""The monitoring component's own checks (scripts/check-monitoring.sh: promtool check/test
rules, dashboards' PromQL, every metric read is exported), run here so that they count in
the test summary like every other deploy check."""
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.whole_repo
def test_alert_rules_and_dashboards_pass_the_monitoring_checks():
    done = subprocess.run([ROOT / "scripts" / "check-monitoring.sh"], capture_output=True, text=True, cwd=ROOT)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, f"scripts/check-monitoring.sh failed:\n{done.stdout}\n{done.stderr}"
