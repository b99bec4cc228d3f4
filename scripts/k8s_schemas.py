"""Offline schema validation of rendered Kubernetes objects.

Built-in kinds: kubernetes-validate's strict JSON schemas for KUBERNETES_VERSION (an unknown
field is an error). Custom resources: the operators' own CRD openAPIV3Schema, taken from the
operators' Go modules (`go mod download`, cached by Go in its module cache), made strict the
way the API server's strict field validation is: an object schema that neither lists a field
nor preserves unknown fields rejects it. CEL rules (x-kubernetes-validations) are not run.

    python scripts/k8s_schemas.py FILE.yaml...     prints every error, exit 1 if any
"""
from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource

from k8s_pins import CRD_SOURCES, KUBERNETES_VERSION, UNVALIDATED_KINDS
from k8s_render import go_binary, parse

OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


# --- built-in kinds -------------------------------------------------------------------

def _schema_dir():
    return resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}.0-local-strict"


@functools.cache
def _registry() -> Registry:
    # kubernetes_validate.validate() re-reads these 1.8 MB of shared definitions for every
    # object it checks; loading them once keeps a run of hundreds of objects under a second.
    definitions = json.loads((_schema_dir() / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _builtin_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    # the file naming of kubernetes-validate: apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1
    flat = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir() / f"{kind.lower()}-{flat}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    group, _, version = api_version.rpartition("/")
    if {"group": group, "version": version, "kind": kind} not in schema.get("x-kubernetes-group-version-kind", []):
        return None  # e.g. a custom group whose first label happens to match a built-in one
    return jsonschema.Draft202012Validator(schema, registry=_registry())


# --- custom resources -----------------------------------------------------------------

def _module_dir(module_at_version: str) -> Path:
    # run outside any Go module (the repository's tools/ferretdb is one) so nothing is edited
    done = subprocess.run([go_binary(), "mod", "download", "-json", module_at_version],
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    info = json.loads(done.stdout) if done.stdout.strip() else {}
    if done.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {module_at_version}: {info.get('Error') or done.stderr.strip()}")
    return Path(info["Dir"])


def strict_openapi(schema: dict) -> dict:
    """An OpenAPI v3 structural schema as a Draft 4 JSON schema with the API server's strictness."""
    def walk(node, strict=True):
        # inside allOf/anyOf/oneOf/not a schema only adds value checks to fields the outer
        # schema declares (structural schemas), so it must not close the object there
        if not isinstance(node, dict):
            return node  # `additionalProperties: true/false`
        node = dict(node)
        for key in ("properties", "patternProperties"):
            if key in node:
                node[key] = {field: walk(sub, strict) for field, sub in node[key].items()}
        if "additionalProperties" in node:
            node["additionalProperties"] = walk(node["additionalProperties"], strict)
        if "not" in node:
            node["not"] = walk(node["not"], False)
        for key in ("allOf", "anyOf", "oneOf"):
            if key in node:
                node[key] = [walk(sub, False) for sub in node[key]]
        if "items" in node:
            items = node["items"]
            node["items"] = [walk(s, strict) for s in items] if isinstance(items, list) else walk(items, strict)
        if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        is_object = node.get("type") == "object" or "properties" in node
        if (strict and is_object and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        return node

    schema = walk(schema)
    # the API server validates metadata itself (a CRD's schema only says `type: object`)
    schema.setdefault("properties", {})["metadata"] = {"$ref": OBJECT_META}
    return schema


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> validator, for every served version of every pinned CRD."""
    found = {}
    for module, files in CRD_SOURCES:
        root = _module_dir(module)
        for name in files:
            for crd in parse((root / name).read_text()):
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served", True):
                        schema = strict_openapi(version["schema"]["openAPIV3Schema"])
                        found[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(
                            schema, registry=_registry())
    return found


# --- one object -----------------------------------------------------------------------

def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top)"


def validate(obj: dict) -> list[str]:
    """Every schema error of one rendered object (empty when it is valid)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = f"{kind}/{(obj.get('metadata') or {}).get('name', '?')}"
    validator = crd_validators().get((api_version, kind)) or _builtin_validator(api_version, kind)
    if validator is None:
        if (api_version, kind) in UNVALIDATED_KINDS:
            return []
        return [f"{name}: no schema for {api_version} {kind} (not a Kubernetes {KUBERNETES_VERSION} kind "
                f"nor a pinned CRD in scripts/k8s_pins.py)"]
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{name}: {_where(e)}: {jsonschema.exceptions.best_match([e]).message[:300]}" for e in errors]


def unvalidated_notes() -> list[str]:
    return [f"not validated: {api} {kind}: {why}" for (api, kind), why in UNVALIDATED_KINDS.items()]


def main(paths: list[str]) -> int:
    errors = [f"{path}: {error}" for path in paths
              for obj in parse(Path(path).read_text()) for error in validate(obj)]
    for line in unvalidated_notes() + errors:
        print(line)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
