"""No Secret in the repository carries a real value: only the documented CHANGE-ME marker,
in rendered Secrets (base64 decoded) and in every secretGenerator input."""
import pytest
import yaml
from conftest import k8s_render

from invariants import generator_inputs, secret_value_violations, secret_violations

KUSTOMIZATIONS = sorted(k8s_render.K8S.rglob("kustomization.yaml"))


def test_no_rendered_secret_or_config_carries_a_credential(objects):
    found = secret_violations(objects)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(k8s_render.K8S)))
def test_secret_generators_only_hold_placeholders(kustomization):
    spec = yaml.safe_load(kustomization.read_text()) or {}
    read = lambda path: (kustomization.parent / path).read_text()  # noqa: E731
    found = [v for where, value in generator_inputs(spec, read) for v in secret_value_violations(where, value)]
    assert not found, "\n".join(found)
