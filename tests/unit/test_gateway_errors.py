"""The gateway's one error table and the rich statuses it builds."""
from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

subprocess.run([str(Path(__file__).resolve().parents[2] / "scripts" / "gen-proto.sh")], check=True)

from google.rpc import error_details_pb2, status_pb2  # noqa: E402

from crm_common import errors as E  # noqa: E402
from crm_gateway.amqp_rpc import RemoteError, RpcTimeout, ServiceUnavailable, remote_error  # noqa: E402
from crm_gateway.errors import status_code_for, to_status  # noqa: E402


@pytest.mark.parametrize("exc,code", [
    (E.NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (E.AlreadyExists("x", {"existing_id": "con_1"}), grpc.StatusCode.ALREADY_EXISTS),
    (E.VersionConflict("x"), grpc.StatusCode.ABORTED),
    (E.InvalidArgument.field("f", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (E.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (E.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
    (E.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
    (RpcTimeout("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (ServiceUnavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (E.CrmError("x"), grpc.StatusCode.INTERNAL),
    (RemoteError("KeyError", "'x'"), grpc.StatusCode.INTERNAL),
    (KeyError("x"), grpc.StatusCode.INTERNAL),
])
def test_table(exc, code):
    assert status_code_for(exc) is code
    assert to_status(exc, "cid").code is code


def _status(s: grpc.Status) -> status_pb2.Status:
    [(key, value)] = s.trailing_metadata
    assert key == "grpc-status-details-bin"
    return status_pb2.Status.FromString(value)


def test_invalid_argument_carries_bad_request_and_names_the_field():
    exc = E.InvalidArgument("must be a valid address", violations=[
        {"field": "emails[0].address", "description": "must be a valid address"},
        {"field": "phones[1].number", "description": "too short"}])
    s = to_status(exc, "cid")
    assert "emails[0].address" in s.details
    rich = _status(s)
    assert rich.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and rich.message == s.details
    bad = error_details_pb2.BadRequest()
    assert rich.details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("emails[0].address", "must be a valid address"), ("phones[1].number", "too short")]


def test_already_exists_names_the_existing_id():
    s = to_status(E.AlreadyExists("email is taken", {"existing_id": "con_9"}), "cid")
    assert "con_9" in s.details
    info = error_details_pb2.ErrorInfo()
    assert _status(s).details[0].Unpack(info)
    assert info.reason == "ALREADY_EXISTS" and info.domain == "crm.v1" and info.metadata["existing_id"] == "con_9"


def test_internal_never_leaks():
    s = to_status(RuntimeError("password=hunter2\nTraceback ..."), "gateway.GetContact.abc")
    assert s.code is grpc.StatusCode.INTERNAL
    assert "hunter2" not in s.details and "Traceback" not in s.details
    assert "gateway.GetContact.abc" in s.details
    assert not _status(s).details
    s = to_status(RemoteError("KeyError", "secret"), "c")
    assert "secret" not in s.details
    s = to_status(E.CrmError("base class message"), "c")
    assert "base class" not in s.details


def test_remote_error_dicts():
    err = {"exc_type": "InvalidArgument", "exc_path": "crm_common.errors.InvalidArgument",
           "value": "f: bad", "exc_args": ["f: bad", {"violations": [{"field": "f", "description": "bad"}]}]}
    exc = remote_error(err)
    assert isinstance(exc, E.InvalidArgument) and exc.violations == [{"field": "f", "description": "bad"}]
    exc = remote_error({"exc_type": "NotFound", "exc_path": "somewhere.else.NotFound", "value": "v", "exc_args": []})
    assert isinstance(exc, RemoteError) and exc.exc_type == "NotFound"
    assert status_code_for(exc) is grpc.StatusCode.INTERNAL
