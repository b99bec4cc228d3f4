"""Every overlay and every component renders with the pinned kustomize, and validates
against the schemas of a current Kubernetes and of the operators' CRDs."""
import pytest
from conftest import VARIANTS, k8s_render

import k8s_schemas
from kube import ref


def test_the_dev_and_prod_overlays_exist():
    assert {"dev", "prod"} <= {v.name for v in VARIANTS}


def test_every_component_is_rendered_in_some_variant():
    components = {p.name for p in (k8s_render.K8S / "components").glob("*") if (p / "kustomization.yaml").is_file()}
    covered = {c for v in VARIANTS for c in v.components}
    assert components <= covered, f"never rendered: {sorted(components - covered)}"


def test_renders(rendered, variant):
    result = rendered[variant]
    assert not isinstance(result, RuntimeError), f"kustomize build failed: {result}"
    assert result, "renders no object"


def test_every_object_is_valid_against_its_schema(objects, variant):
    for note in k8s_schemas.unvalidated_notes():
        print(note)
    errors = [error for obj in objects for error in k8s_schemas.validate(obj)]
    assert not errors, f"{len(errors)} schema error(s) in {variant}:\n" + "\n".join(errors)


def test_no_two_objects_share_a_kind_and_name(objects):
    seen = [(o.get("apiVersion"), ref(o), o["metadata"].get("namespace")) for o in objects]
    assert len(seen) == len(set(seen))
