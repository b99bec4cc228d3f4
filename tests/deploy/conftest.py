"""Fixtures over the rendered manifests: every variant is rendered once per session with the
pinned kustomize (scripts/k8s_render.py), into var/k8s/<variant>.yaml as well. No cluster.

What the manifests must hold is read from the registry (crm_common.registry, CRM_REGISTRY
for another file), never from a list of names here. CRM_K8S points the whole suite at
another deploy/k8s tree: test_generated.py runs it on a copy generated for a registry with
one more service. Tests marked `whole_repo` check the repository itself (packages, images,
the monitoring component's metrics), not the tree under test, and are left out there."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import k8s_render  # noqa: E402 - needs the path above

from kube import containers, workloads  # noqa: E402
from invariants import split_image  # noqa: E402

VARIANTS = k8s_render.variants()


def variant_names(component: str | None = None) -> list[str]:
    """The variants (optionally: those that include COMPONENT), for parametrize."""
    return [v.name for v in VARIANTS if component is None or component in v.components]


def pytest_configure(config):
    config.addinivalue_line("markers", "whole_repo: checks the repository itself, not the deploy/k8s tree under test")


def pytest_generate_tests(metafunc):
    # a test that asks for `variant` runs once per rendered variant (dev, prod, dev+keda ...)
    explicit = any("variant" in m.args[0] for m in metafunc.definition.iter_markers("parametrize"))
    if "variant" in metafunc.fixturenames and not explicit:
        metafunc.parametrize("variant", variant_names())


@pytest.fixture(scope="session")
def rendered() -> dict:
    return k8s_render.render_all(VARIANTS)


@pytest.fixture
def objects(rendered, variant) -> list[dict]:
    result = rendered[variant]
    if isinstance(result, RuntimeError):
        pytest.fail(f"{variant} does not render: {result}")
    return result


@pytest.fixture(scope="session")
def base() -> list[dict]:
    """deploy/k8s/base alone, as the generator wrote it (before any overlay's patches)."""
    return k8s_render.parse(k8s_render.build(k8s_render.K8S / "base"))


@pytest.fixture(scope="session")
def base_images() -> set[str]:
    """The image names the base uses: placeholders every overlay must replace."""
    names = set()
    for base in [k8s_render.K8S / "base", *sorted((k8s_render.K8S / "base").glob("*"))]:
        if (base / "kustomization.yaml").is_file():
            for workload in workloads(k8s_render.parse(k8s_render.build(base))):
                names |= {split_image(c["image"])[0] for c in containers(workload)}
    return names
