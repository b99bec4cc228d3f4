"""Real test infrastructure: the project's RabbitMQ and FerretDB (or whatever
AMQP_URI / MONGODB_URL point at). No eventlet, no nameko here: shared by the
integration tests (eventlet) and the end-to-end tests (grpcio).

The broker is *ours* (tests may add vhosts to it, stop and start it) when it is the
project's local node, or a node scripts/infra.sh runs under the same CRM_RABBITMQ_*
environment as the tests (CRM_RABBITMQ_NODE set, AMQP_URI pointing at its port): a
private broker, so a test that stops its broker never stops the shared one."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from crm_common import config

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "scripts" / "infra.sh"


def broker_is_ours() -> bool:
    """True when scripts/infra.sh controls the broker at config.amqp_uri()."""
    return "AMQP_URI" not in os.environ or bool(os.environ.get("CRM_RABBITMQ_NODE"))


def rabbitmqctl(*args: str, env: dict[str, str] | None = None) -> None:
    """rabbitmqctl on the node scripts/infra.sh runs (it reads the CRM_RABBITMQ_* env)."""
    subprocess.run([str(INFRA), "rabbitmqctl", *args], check=True, capture_output=True,
                   env={**os.environ, **(env or {})})


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


@dataclass
class RabbitNode:
    amqp_uri: str
    env: dict[str, str]   # the CRM_RABBITMQ_* settings scripts/infra.sh runs it under

    def ctl(self, *args: str) -> None:
        rabbitmqctl(*args, env=self.env)


def _free_port(low: int = 1024, high: int = 65535) -> int:
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {low}-{high}")


@contextmanager
def private_rabbitmq(data_dir: Path) -> Iterator[RabbitNode]:
    """A RabbitMQ node of one's own (node name, ports, data dir and Erlang cookie), run
    by scripts/infra.sh beside the project's broker, stopped again on exit: for tests
    that stop their broker while others (benchmarks, other test runs) use the shared one."""
    # The CLI tools take distribution ports from dist+10000 up to dist+10010.
    dist = _free_port(20000, 30000)
    env = {"CRM_RABBITMQ_NODE": f"crm-test-{uuid.uuid4().hex[:8]}@localhost",
           "CRM_AMQP_PORT": str(_free_port(40000, 49000)), "CRM_AMQP_DIST_PORT": str(dist),
           "CRM_RABBITMQ_DIR": str(data_dir)}
    run_env = {**os.environ, **env}
    try:
        subprocess.run([str(INFRA), "up", "rabbitmq"], check=True, capture_output=True, env=run_env)
        yield RabbitNode(f"amqp://guest:guest@127.0.0.1:{env['CRM_AMQP_PORT']}/", env)
    finally:
        subprocess.run([str(INFRA), "down", "rabbitmq"], capture_output=True, env=run_env)
        # in case `up` failed after the node started (down stops only what up finished)
        subprocess.run([str(INFRA), "rabbitmqctl", "stop"], capture_output=True, env=run_env)


def fresh_vhost() -> tuple[str, str | None]:
    """An AMQP URI on a new vhost of our broker, so tests never meet the services
    that `make up` runs. Someone else's AMQP_URI is used as is."""
    if not broker_is_ours():
        return os.environ["AMQP_URI"], None
    vhost = f"crm-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    parts = urlsplit(config.amqp_uri())
    return urlunsplit(parts._replace(path="/" + vhost)), vhost


def drop_vhost(vhost: str | None) -> None:
    if vhost:
        rabbitmqctl("delete_vhost", vhost)


def unique_db(prefix: str) -> str:
    return f"test_{prefix}_{uuid.uuid4().hex[:8]}"
