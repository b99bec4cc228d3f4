"""Render every Kustomize variant of deploy/k8s with the pinned kustomize binary.

Variants: each overlay as it is, each opt-in component on top of the dev overlay (so every
component is rendered at least once), and prod with every component (the full picture).

    python scripts/k8s_render.py [OUT_DIR]     writes OUT_DIR/<variant>.yaml (default var/k8s)

CRM_K8S=DIR renders another deploy/k8s tree (and CRM_K8S_OUT=DIR writes its renders
elsewhere): tests/deploy/test_generated.py checks a copy generated for another registry
with the same tests.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from k8s_pins import KUSTOMIZE_MODULE, KUSTOMIZE_VERSION

ROOT = Path(__file__).resolve().parents[1]
K8S = Path(os.environ.get("CRM_K8S") or ROOT / "deploy" / "k8s")
TOOLS_BIN = ROOT / "tools" / "bin"
KUSTOMIZE = TOOLS_BIN / "kustomize"
OUT_DIR = Path(os.environ.get("CRM_K8S_OUT") or ROOT / "var" / "k8s")


def go_binary() -> str:
    # /usr/local/go/bin is where Go lives on these machines when a shell did not add it to PATH
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise RuntimeError("Go is needed to build kustomize and fetch CRDs (not found on PATH or in /usr/local/go/bin)")
    return found


@functools.cache
def ensure_kustomize() -> Path:
    """Build the pinned kustomize into tools/bin unless that exact version is already there."""
    if KUSTOMIZE.exists():
        version = subprocess.run([KUSTOMIZE, "version"], capture_output=True, text=True).stdout.strip()
        if version == KUSTOMIZE_VERSION:
            return KUSTOMIZE
    print(f"building kustomize {KUSTOMIZE_VERSION} into {TOOLS_BIN}", file=sys.stderr)
    subprocess.run([go_binary(), "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
                   env={**os.environ, "GOBIN": str(TOOLS_BIN)}, check=True)
    return KUSTOMIZE


@dataclass
class Variant:
    name: str              # dev, prod, dev+keda, prod+all ...
    kustomization: Path    # the directory `kustomize build` renders
    components: list[str]  # component names in it (the overlay's own and the added ones)


def _listed_components(overlay: Path) -> list[str]:
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text()) or {}
    return [Path(os.path.normpath(overlay / c)).name for c in spec.get("components") or []]


def _dirs_with_kustomization(parent: Path) -> list[Path]:
    return sorted(p for p in parent.glob("*") if (p / "kustomization.yaml").is_file())


def _stacked(name: str, overlay: Path, components: list[Path], work: Path) -> Path:
    """A copy of the overlay (under var/) with more components listed, exactly as a user
    enables one: the overlay's namespace, labels, images and patches apply to them too."""
    here = work / name
    shutil.rmtree(here, ignore_errors=True)
    shutil.copytree(overlay, here)
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text()) or {}

    def from_copy(entry: str) -> str:  # a folder outside the overlay, seen from the copy
        target = (overlay / entry).resolve()
        if "://" in entry or target.is_relative_to(overlay.resolve()):
            return entry
        return os.path.relpath(target, here)

    for key in ("resources", "components"):
        spec[key] = [from_copy(entry) for entry in spec.get(key) or []]
    spec["components"] += [os.path.relpath(c, here) for c in components]
    (here / "kustomization.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return here


def variants(work: Path | None = None) -> list[Variant]:
    """Every variant; stacked ones are copies in WORK (default: a private folder under
    var/k8s, removed at exit, so that concurrent runs do not rewrite each other's)."""
    if work is None:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="variants-", dir=OUT_DIR))
        atexit.register(shutil.rmtree, work, True)
    overlays = {p.name: p for p in _dirs_with_kustomization(K8S / "overlays")}
    components = {p.name: p for p in _dirs_with_kustomization(K8S / "components")}
    found = [Variant(name, path, _listed_components(path)) for name, path in overlays.items()]
    if "dev" in overlays:
        in_dev = _listed_components(overlays["dev"])
        for name, path in components.items():
            if name not in in_dev:
                found.append(Variant(f"dev+{name}", _stacked(f"dev+{name}", overlays["dev"], [path], work),
                                     in_dev + [name]))
    if "prod" in overlays:
        in_prod = _listed_components(overlays["prod"])
        extra = [name for name in components if name not in in_prod]
        if extra:
            found.append(Variant("prod+all", _stacked("prod+all", overlays["prod"],
                                                      [components[n] for n in extra], work),
                                 in_prod + extra))
    return found


def build(kustomization: Path) -> str:
    """`kustomize build`; raises RuntimeError with kustomize's own message on failure."""
    done = subprocess.run([ensure_kustomize(), "build", kustomization], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"kustomize build {kustomization} failed")
    return done.stdout


def parse(text: str) -> list[dict]:
    return [doc for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if doc]


def render_all(chosen: list[Variant] | None = None, out_dir: Path = OUT_DIR) -> dict[str, list[dict] | RuntimeError]:
    """Render the variants (default: all) into out_dir/<variant>.yaml; one that fails maps to its error."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered: dict[str, list[dict] | RuntimeError] = {}
    for variant in variants() if chosen is None else chosen:
        try:
            text = build(variant.kustomization)
        except RuntimeError as failure:
            rendered[variant.name] = failure
            continue
        (out_dir / f"{variant.name}.yaml").write_text(text)
        rendered[variant.name] = parse(text)
    return rendered


def main() -> int:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    failed = 0
    for name, result in render_all(out_dir=out_dir).items():
        if isinstance(result, RuntimeError):
            failed += 1
            print(f"FAIL {name}: {result}")
        else:
            print(f"ok   {name}: {len(result)} objects -> {out_dir / name}.yaml")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
