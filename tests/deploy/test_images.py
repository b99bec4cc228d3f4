"""Images: every reference is set by an overlay (never the base placeholder, never :latest),
the Dockerfiles build small non-root images, and each image's dependency set keeps grpcio
and eventlet apart."""
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, k8s_render

from invariants import dockerfile_violations, image_violations

DOCKERFILES = sorted((ROOT / "deploy" / "docker").glob("*Dockerfile*"))
OVERLAYS = sorted(p for p in (k8s_render.K8S / "overlays").glob("*") if (p / "kustomization.yaml").is_file())


def test_the_base_uses_placeholder_images(base_images):
    assert base_images, "no image found in deploy/k8s/base"


def test_every_rendered_image_is_set_by_the_overlay_and_pinned(objects, base_images):
    found = image_violations(objects, base_images)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_sets_every_base_image(overlay, base_images):
    listed = {entry["name"] for entry in yaml.safe_load((overlay / "kustomization.yaml").read_text()).get("images") or []}
    assert base_images <= listed, f"{overlay.name} does not set {sorted(base_images - listed)}"


def test_there_are_dockerfiles():
    assert DOCKERFILES, "no Dockerfile in deploy/docker"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_a_small_non_root_image(dockerfile):
    found = dockerfile_violations(dockerfile.read_text())
    assert not found, "\n".join(found)


def _workspace_packages() -> dict[str, str]:
    """Deployable package name -> its kind (gateway or service), from the workspace members."""
    import tomllib
    packages = {tomllib.loads((ROOT / "gateway" / "pyproject.toml").read_text())["project"]["name"]: "gateway"}
    for pyproject in sorted((ROOT / "services").glob("*/pyproject.toml")):
        packages[tomllib.loads(pyproject.read_text())["project"]["name"]] = "service"
    return packages


# The gateway runs on grpc's C core with asyncio; the services run under eventlet's monkey
# patching, which grpcio does not survive. An image must never carry both.
FORBIDDEN = {"gateway": ("eventlet", "nameko"), "service": ("grpcio",)}


@pytest.mark.parametrize("package, kind", sorted(_workspace_packages().items()))
def test_an_image_installs_grpcio_or_eventlet_never_both(package, kind):
    uv = [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]
    exported = subprocess.run([*uv, "export", "--frozen", "--no-dev", "--no-hashes", "--package", package],
                              cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].strip().lower() for line in exported.splitlines()
             if line and not line.startswith(("#", " ", "-e"))}
    assert names, f"uv export listed nothing for {package}"
    bad = sorted(n for n in names if n.startswith(FORBIDDEN[kind]))
    assert not bad, f"{package} would install {bad}"
