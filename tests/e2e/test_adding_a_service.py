"""docs/adding-a-service.md, followed by a test: a throwaway service made by
scripts/new_service.py (its package, its proto, one registry entry, nothing else) runs
beside the real stack, is reachable through a gateway that reads that registry, puts its
facts on the real contacts' timeline, and renders and validates as Kubernetes manifests.
Nothing of it is committed: it lives in a temporary folder."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from conftest import free_port
from crm.v1 import contacts_pb2
from crm_gateway import client
from helpers import new_contact, probe, stubs, wait_for
from support.infra import ROOT, unique_db

NAME = "parcel-notes"


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory):
    root = tmp_path_factory.mktemp("newservice")
    registry = root / "registry.toml"
    shutil.copy(ROOT / "libs" / "crm-common" / "crm_common" / "registry.toml", registry)
    subprocess.run([sys.executable, ROOT / "scripts" / "new_service.py", NAME, "--root", root,
                    "--registry", registry], check=True, capture_output=True)
    gen = root / "gen"
    gen.mkdir()
    protos = [str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto" / "crm" / "v1").glob("*.proto")]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ROOT / "proto", "-I", root / "proto",
                    f"--python_out={gen}", *protos, "crm/v1/parcel_notes.proto"], check=True)
    for pkg in (gen / "crm", gen / "crm" / "v1"):
        (pkg / "__init__.py").touch()
    return root, registry, gen


def _start(command, env, log):
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture(scope="module")
def running(scaffold, stack):
    root, registry, gen = scaffold
    ports = {"service": free_port(), "gateway": free_port()}
    addr = f"127.0.0.1:{free_port()}"
    env = {**os.environ, **stack.auth.environment(), "CRM_REGISTRY": str(registry), "AMQP_URI": stack.amqp_uri,
           "MONGODB_URL": stack.mongodb_url,
           "PYTHONPATH": os.pathsep.join([str(gen), str(root / "services" / NAME)]), "PYTHONWARNINGS": "ignore"}
    procs = [
        _start([str(ROOT / ".venv" / "bin" / "crm-service"), NAME],
               {**env, "METRICS_PORT": str(ports["service"]), "MONGODB_DATABASE": unique_db("parcel_notes")},
               root / "service.log"),
        _start([str(ROOT / ".venv" / "bin" / "crm-gateway")],
               {**env, "METRICS_PORT": str(ports["gateway"]), "GATEWAY_ADDR": addr}, root / "gateway.log"),
    ]
    try:
        wait_for(lambda: all(probe(p, "/readyz") == 200 for p in ports.values()), timeout=60)
        yield addr
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


def _api(gen: Path):
    spec = importlib.util.spec_from_file_location("parcel_notes_pb2", gen / "crm" / "v1" / "parcel_notes_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scaffold_touches_only_its_package_its_proto_and_its_registry_entry(scaffold):
    root, registry, _ = scaffold
    made = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "gen" not in p.parts)
    assert made == ["proto/crm/v1/parcel_notes.proto", "registry.toml",
                    *[f"services/{NAME}/parcel_notes/{m}.py" for m in
                      ("__init__", "contracts", "domain", "events", "service", "store", "views")],
                    f"services/{NAME}/pyproject.toml"]
    assert f"[services.{NAME}]" in registry.read_text()


def test_a_new_service_is_reachable_through_the_gateway_and_shows_on_the_timeline(scaffold, running, channel, stack):
    _, _, gen = scaffold
    api = _api(gen)
    contacts, _ = stubs(channel)
    contact = new_contact(contacts)
    with grpc.insecure_channel(running) as plain:
        ch = client.authorized(plain, stack.token("admin"))
        create = ch.unary_unary("/crm.v1.ParcelNotesService/CreateNote",
                                request_serializer=api.CreateNoteRequest.SerializeToString,
                                response_deserializer=api.Note.FromString)
        get = ch.unary_unary("/crm.v1.ParcelNotesService/GetNote",
                             request_serializer=api.GetNoteRequest.SerializeToString,
                             response_deserializer=api.Note.FromString)
        note = create(api.CreateNoteRequest(contact_id=contact.id, text="Left at the door", idempotency_key="k-1"),
                      timeout=10)
        assert note.id.startswith("par_") and note.contact_id == contact.id and note.created_at.seconds > 0
        assert get(api.GetNoteRequest(note_id=note.id), timeout=10) == note
        again = create(api.CreateNoteRequest(contact_id=contact.id, text="Left at the door", idempotency_key="k-1"),
                       timeout=10)
        assert again == note   # the platform's idempotency keys, for free
        with pytest.raises(grpc.RpcError) as exc:
            create(api.CreateNoteRequest(contact_id=contact.id, text=""), timeout=10)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "text: is required" in exc.value.details()
        with pytest.raises(grpc.RpcError) as exc:
            get(api.GetNoteRequest(note_id="par_missing"), timeout=10)
        assert exc.value.code() is grpc.StatusCode.NOT_FOUND

    def on_timeline():
        entries = contacts.ListTimeline(contacts_pb2.ListTimelineRequest(contact_id=contact.id), timeout=5).entries
        return [e for e in entries if e.kind == "note_created"]

    [entry] = wait_for(on_timeline, timeout=20)
    assert entry.source == NAME and entry.summary == "Left at the door"
    assert (entry.reference.type, entry.reference.id) == ("note", note.id)


def test_a_new_service_renders_and_validates_as_kubernetes_manifests(scaffold, tmp_path):
    _, registry, _ = scaffold
    k8s = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", k8s)
    env = {**os.environ, "CRM_REGISTRY": str(registry), "CRM_K8S": str(k8s), "CRM_K8S_OUT": str(tmp_path / "out")}
    subprocess.run([sys.executable, ROOT / "scripts" / "k8s_generate.py"], env=env, check=True, capture_output=True)
    assert (k8s / "base" / "deployables" / f"{NAME}.yaml").exists()
    suite = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:pytest_nameko", "-p", "no:cacheprovider", "-q",
                            "-m", "not whole_repo", ROOT / "tests" / "deploy"], env=env, cwd=ROOT,
                           capture_output=True, text=True)
    assert suite.returncode == 0, suite.stdout[-6000:]
    rendered = (tmp_path / "out" / "prod+all.yaml").read_text()
    assert f"name: {NAME}" in rendered and "crm_parcel_notes" in rendered
