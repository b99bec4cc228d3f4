"""`make up` refuses to start beside another process on its ports (another checkout's
stack, say): its readiness checks would find that process and the stack would talk to it."""
import socket
import sys

import pytest
from support.infra import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from stack import Stack  # noqa: E402


def _listening() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_taken_port_is_named_before_anything_starts(tmp_path):
    with _listening() as metrics, _listening() as grpc:
        st = Stack(gateway_addr=f"127.0.0.1:{grpc.getsockname()[1]}",
                   metrics_ports={"contacts": metrics.getsockname()[1]}, run_dir=tmp_path, broker_env=None)
        with pytest.raises(SystemExit) as refused:
            st.check_ports_free(["contacts", "gateway"])
        message = str(refused.value)
        assert f"{metrics.getsockname()[1]} (contacts metrics)" in message
        assert f"{grpc.getsockname()[1]} (the gateway's gRPC)" in message
        assert not (tmp_path / "run").exists()      # nothing started


def test_free_ports_pass(tmp_path):
    with _listening() as probe:
        port = probe.getsockname()[1]
    st = Stack(gateway_addr="127.0.0.1:0", metrics_ports={"contacts": port}, run_dir=tmp_path, broker_env=None)
    st.check_ports_free(["contacts"])
