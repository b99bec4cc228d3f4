"""deploy/k8s follows the registry: the generated files are what scripts/k8s_generate.py
writes from it today, no hand-written manifest names a service, and a registry with one
more service needs nothing in deploy/ but a regeneration to render and pass this suite."""
import os
import re
import shutil
import subprocess
import sys
from filecmp import dircmp
from pathlib import Path

import pytest
from conftest import ROOT, k8s_render

import k8s_generate
from crm_common import registry
from invariants import REGISTRY
from kube import of_kind


def test_the_generated_files_are_what_the_registry_gives():
    stale = k8s_generate.out_of_date(REGISTRY, k8s_render.K8S)
    assert not stale, "out of date with the registry, run `make k8s-generate`:\n" + "\n".join(stale)


def test_every_generated_file_says_so():
    for path in k8s_generate.generated(REGISTRY, k8s_render.K8S):
        assert (k8s_render.K8S / path).read_text().startswith(k8s_generate.HEADER), path


def _hand_written() -> list[Path]:
    generated = set(k8s_generate.generated(REGISTRY, k8s_render.K8S))
    return [p for p in sorted(k8s_render.K8S.rglob("*.yaml"))
            if p.relative_to(k8s_render.K8S) not in generated and "tests" not in p.relative_to(k8s_render.K8S).parts]


def test_no_hand_written_manifest_names_a_service():
    """Services are selected by label (app.kubernetes.io/component) or listed by the
    generator; a name in a hand-written manifest is a place a new service would be missed.
    Comments may use names as examples."""
    names = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(s.name) for s in REGISTRY.services) + r")(?![\w-])")
    found = [f"{path.relative_to(k8s_render.K8S)}:{n}: {line.strip()}"
             for path in _hand_written()
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if names.search(line.split("#", 1)[0])]
    assert not found, "\n".join(found)


# A made-up service touching every derived part: two sources' events, the timeline in both
# directions, a hyphenated name, its own setting and replica bounds.
EXTRA_SERVICE = """
[services.field-visits]
module = "field_visits.service:FieldVisitsService"
package = "crm-field-visits"
path = "services/field-visits"
metrics_port = 9199
publishes = ["visit_completed"]
timeline = true
subscribes = ["contacts.contact_created", "loyalty.tier_changed", "timeline"]
replicas = [1, 4]

[services.field-visits.settings]
FIELD_VISITS_REGION = "north"
"""


def _differing(left: Path, right: Path, here: Path = Path()) -> set[Path]:
    cmp = dircmp(left, right)
    out = {here / n for n in cmp.left_only + cmp.right_only + cmp.diff_files + cmp.funny_files}
    for sub, deeper in cmp.subdirs.items():
        out |= _differing(left / sub, right / sub, here / sub)
    return out


@pytest.mark.whole_repo
def test_a_new_service_is_its_registry_entry_and_a_regeneration(tmp_path):
    reg_file = tmp_path / "registry.toml"
    reg_file.write_text(registry.path().read_text() + EXTRA_SERVICE)
    extra = registry.parse(reg_file.read_text(), reg_file)
    k8s = tmp_path / "k8s"
    shutil.copytree(k8s_render.K8S, k8s)
    env = {**os.environ, "CRM_REGISTRY": str(reg_file), "CRM_K8S": str(k8s), "CRM_K8S_OUT": str(tmp_path / "rendered")}

    done = subprocess.run([sys.executable, ROOT / "scripts" / "k8s_generate.py"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    changed = _differing(k8s_render.K8S, k8s)
    assert changed <= set(k8s_generate.generated(extra, k8s)), f"changed by hand: {sorted(changed)}"
    assert Path("base/deployables/field-visits.yaml") in changed

    # the same suite as `make k8s-check`, on the copy, for the other registry
    suite = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:pytest_nameko", "-p", "no:cacheprovider",
                            "-q", "-m", "not whole_repo", ROOT / "tests" / "deploy"],
                           env=env, cwd=ROOT, capture_output=True, text=True)
    assert suite.returncode == 0, suite.stdout[-8000:] + suite.stderr[-2000:]
    assert " passed" in suite.stdout.splitlines()[-1]

    objects = k8s_render.parse((tmp_path / "rendered" / "prod+all.yaml").read_text())
    for kind in ("Deployment", "ScaledObject", "User", "Permission", "PodDisruptionBudget"):
        assert "field-visits" in {o["metadata"]["name"] for o in of_kind(objects, kind)}, kind
    (mongodb,) = of_kind(objects, "MongoDBCommunity")
    assert {"name": "readWrite", "db": "crm_field_visits"} in [r for u in mongodb["spec"]["users"] for r in u["roles"]]
