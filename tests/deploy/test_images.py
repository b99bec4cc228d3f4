"""Images: every reference is set by an overlay (never the base placeholder, never :latest),
the Dockerfiles build small non-root images that run a service from the registry with no
config file, and each image's dependency set keeps grpcio and eventlet apart."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, k8s_render

from invariants import REGISTRY, dockerfile_instructions, dockerfile_violations, image_violations

DOCKERFILES = sorted((ROOT / "deploy" / "docker").glob("*Dockerfile*"))
OVERLAYS = sorted(p for p in (k8s_render.K8S / "overlays").glob("*") if (p / "kustomization.yaml").is_file())


def test_the_base_uses_placeholder_images(base_images):
    assert base_images == {f"crm-{d.name}" for d in REGISTRY.deployables}


def test_every_rendered_image_is_set_by_the_overlay_and_pinned(objects, base_images):
    found = image_violations(objects, base_images)
    assert not found, "\n".join(found)


def _images_set_in(overlay: Path) -> set[str]:
    """Image names an overlay's `images:` sets, its own and those of the components it keeps
    in its own folder (the generated deployables/)."""
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    names = {entry["name"] for entry in spec.get("images") or []}
    for component in spec.get("components") or []:
        folder = (overlay / component).resolve()
        if folder.is_relative_to(overlay.resolve()):
            names |= _images_set_in(folder)
    return names


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_sets_every_base_image(overlay, base_images):
    listed = _images_set_in(overlay)
    assert base_images <= listed, f"{overlay.name} does not set {sorted(base_images - listed)}"


whole_repo = pytest.mark.whole_repo


@whole_repo
def test_there_are_dockerfiles():
    assert DOCKERFILES, "no Dockerfile in deploy/docker"


@whole_repo
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_a_small_non_root_image(dockerfile):
    found = dockerfile_violations(dockerfile.read_text())
    assert not found, "\n".join(found)


@whole_repo
def test_the_service_image_runs_the_named_service_from_the_registry_without_a_config_file():
    instructions = dockerfile_instructions((ROOT / "deploy" / "docker" / "service.Dockerfile").read_text())
    final = instructions[max(i for i, (what, _) in enumerate(instructions) if what == "FROM"):]
    copies = [rest for what, rest in final if what in ("COPY", "ADD")]
    assert copies == ["--from=builder /app/.venv /app/.venv"], f"the runtime stage copies {copies}"
    env = " ".join(rest for what, rest in final if what == "ENV")
    assert "CRM_SERVICE=${SERVICE}" in env and "CRM_CONFIG" not in env
    assert ("ENTRYPOINT", '["crm-service"]') in final


@whole_repo
@pytest.mark.parametrize("service", REGISTRY.services, ids=lambda s: s.name)
def test_each_service_builds_with_the_service_dockerfile(service):
    """service.Dockerfile installs crm-$SERVICE from services/$SERVICE/: the registry's
    package and path must follow that naming."""
    assert (service.package, service.path) == (f"crm-{service.name}", f"services/{service.name}")
    assert (ROOT / service.path / "pyproject.toml").is_file()


@whole_repo
def test_the_crm_common_wheel_carries_the_registry(tmp_path):
    """Images install crm-common as a wheel: crm-service (and the gateway) read the registry
    from its package data, so registry.toml must be in it."""
    done = subprocess.run([*_uv(), "build", "--package", "crm-common", "--wheel", "--offline", "--out-dir", tmp_path],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("crm_common-*.whl")
    assert "crm_common/registry.toml" in zipfile.ZipFile(wheel).namelist()


def _uv() -> list[str]:
    return [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]


# The gateway runs on grpc's C core with asyncio; the services run under eventlet's monkey
# patching, which grpcio does not survive. An image must never carry both.
FORBIDDEN = {"gateway": ("eventlet", "nameko"), "service": ("grpcio",)}


@whole_repo
@pytest.mark.parametrize("deployable", REGISTRY.deployables, ids=lambda d: d.package)
def test_an_image_installs_grpcio_or_eventlet_never_both(deployable):
    exported = subprocess.run([*_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--package", deployable.package],
                              cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].strip().lower() for line in exported.splitlines()
             if line and not line.startswith(("#", " ", "-e"))}
    assert names, f"uv export listed nothing for {deployable.package}"
    bad = sorted(n for n in names if n.startswith(FORBIDDEN[deployable.kind]))
    assert not bad, f"{deployable.package} would install {bad}"
