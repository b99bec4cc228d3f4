"""Real test infrastructure: the project's RabbitMQ and FerretDB (or whatever
AMQP_URI / MONGODB_URL point at). No eventlet, no nameko here: shared by the
integration tests (eventlet) and the end-to-end tests (grpcio)."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from crm_common import config

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "scripts" / "infra.sh"


def rabbitmqctl(*args: str) -> None:
    subprocess.run([str(INFRA), "rabbitmqctl", *args], check=True, capture_output=True)


def fresh_vhost() -> tuple[str, str | None]:
    """An AMQP URI on a new vhost of the project's broker, so tests never meet the
    services that `make up` runs. With a user-supplied AMQP_URI we use it as is."""
    if "AMQP_URI" in os.environ:
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
