#!/usr/bin/env python3
"""Run the CRM's processes locally: every service (nameko) and the gateway.

    scripts/stack.py up        start what is not running, wait until ready
    scripts/stack.py down      stop what `up` started
    scripts/stack.py status
    scripts/stack.py run NAME  one of them in the foreground (make run-NAME)

The processes are the registry's deployables (crm_common.registry): every service as
``crm-service NAME``, then the gateway; before them the local mail and SMS sink
(scripts/mail_sink.py, ``make mail`` lists what it received), where marketing's email and
SMS go unless MARKETING_SMTP_URL / MARKETING_SMS_URL say otherwise. Processes write logs to var/log/<name>.log and
pid files to var/run/. The end-to-end tests use :class:`Stack` directly to run a
private stack on their own vhost, databases and ports. Infrastructure (broker,
database) is scripts/infra.sh's job.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pika

from crm_common import access, broker, config, registry
from crm_gateway import devauth

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
MAIL_SINK = "mail-sink"


def services() -> list[str]:
    """Every service of the registry, in its order; each runs as `crm-service NAME`."""
    return [s.name for s in registry.load().services]


def metrics_ports() -> dict[str, int]:
    return {d.name: d.metrics_port for d in registry.load().deployables}


def our_broker_env() -> dict[str, str] | None:
    """The CRM_RABBITMQ_* settings of the broker scripts/infra.sh runs ({} = its
    defaults), or None when AMQP_URI names someone else's broker (no users made there)."""
    if "AMQP_URI" in os.environ and not os.environ.get("CRM_RABBITMQ_NODE"):
        return None
    return {}


@dataclass
class Stack:
    amqp_uri: str = field(default_factory=config.amqp_uri)
    mongodb_url: str = field(default_factory=config.mongodb_url)
    gateway_addr: str = field(default_factory=lambda: config.env(
        "GATEWAY_ADDR", f"127.0.0.1:{registry.load().gateway.grpc_port}"))
    metrics_ports: dict[str, int] = field(default_factory=metrics_ports)
    database_prefix: str = ""          # "" = the services' own defaults (crm_<service>)
    run_dir: Path = ROOT / "var"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)   # more environment for every process
    # The broker node whose users this stack manages (CRM_RABBITMQ_* settings, {} = the
    # default node), None = run every process with amqp_uri's own credentials.
    broker_env: dict[str, str] | None = field(default_factory=our_broker_env)
    _users_ready: bool = False
    mail_ports: tuple[int, int] = (8025, 8026)   # the mail sink's SMTP port and HTTP (SMS) port

    @property
    def mailbox(self) -> Path:
        """Where the mail sink keeps what it received (scripts/mail_sink.py's Mailbox reads it)."""
        return self.run_dir / "mail"

    def sink_environment(self) -> dict[str, str]:
        smtp, http = self.mail_ports
        return {"MARKETING_SMTP_URL": f"smtp://127.0.0.1:{smtp}", "MARKETING_SMS_URL": f"http://127.0.0.1:{http}/sms",
                "MARKETING_TRACKING_URL": f"http://127.0.0.1:{http}/t"}

    @cached_property
    def auth(self) -> devauth.DevAuth:
        """The stack's local keys and secret (created by `up`, kept across restarts)."""
        return devauth.init(self.run_dir / "auth")

    def token(self, *roles: str, subject: str = "", team: str = "", **claims) -> str:
        """A bearer token for the gateway, as the local identity provider signs it."""
        return self.auth.mint(subject or f"dev-{roles[0]}", roles, team, **claims)

    def internal_token(self, *roles: str, subject: str = "") -> str:
        """What the gateway hands a service (crm_common.access): for calling services directly."""
        principal = access.Principal(subject or f"user:dev-{roles[0]}", tuple(roles))
        return access.mint(principal, self.auth.secret)

    # -- commands -----------------------------------------------------------------
    def command(self, name: str) -> list[str]:
        if name == MAIL_SINK:
            return [str(BIN / "python"), str(ROOT / "scripts" / "mail_sink.py"), "serve", "--dir", str(self.mailbox),
                    "--smtp-port", str(self.mail_ports[0]), "--http-port", str(self.mail_ports[1])]
        if name == "gateway":
            return [str(BIN / "crm-gateway")]
        return [str(BIN / "crm-service"), name]

    # -- the deployables' broker users ------------------------------------------------
    def _rabbitmqctl(self, *args: str) -> None:
        done = subprocess.run([str(ROOT / "scripts" / "infra.sh"), "rabbitmqctl", *args], text=True,
                              capture_output=True, env={**os.environ, **(self.broker_env or {})})
        if done.returncode:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout[-300:]} {done.stderr[-300:]}")

    def _broker_password(self, user: str) -> str:
        """Derived from the node's Erlang cookie: every stack on one node (make up's, the
        test suites') agrees on it without sharing a file, and whoever can read the
        cookie can administer the node anyway."""
        env = {**os.environ, **(self.broker_env or {})}
        directory = Path(env.get("CRM_RABBITMQ_DIR") or ROOT / "var" / "rabbitmq")
        directory = directory if directory.is_absolute() else ROOT / directory
        cookie = (directory / ".erlang.cookie").read_bytes().strip()
        return hmac.new(cookie, f"crm-broker-user:{user}".encode(), hashlib.sha256).hexdigest()

    def ensure_broker_users(self) -> None:
        """Each deployable runs as its own broker user, with exactly the permissions its
        cluster user has (crm_common.broker, the same as deploy/k8s), on this stack's
        vhost: one ``rabbitmqctl import_definitions`` (users are added or updated)."""
        if self.broker_env is None or self._users_ready:
            return
        vhost = urllib.parse.unquote(urllib.parse.urlsplit(self.amqp_uri).path[1:]) or "/"
        users, permissions = [], []
        for d in registry.load().deployables:
            salt = os.urandom(4)
            digest = hashlib.sha256(salt + self._broker_password(broker.user(d)).encode()).digest()
            users.append({"name": broker.user(d), "password_hash": base64.b64encode(salt + digest).decode(),
                          "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
            permissions.append({"user": broker.user(d), "vhost": vhost, **broker.permissions(d)})
        definitions = self.run_dir / "run" / "broker-users.json"   # hashes only; the node reads the file itself
        definitions.parent.mkdir(parents=True, exist_ok=True)
        definitions.write_text(json.dumps({"users": users, "vhosts": [{"name": vhost}], "permissions": permissions}))
        self._rabbitmqctl("import_definitions", str(definitions), "--format", "json")
        self._users_ready = True

    def amqp_uri_of(self, deployable: str) -> str:
        """The AMQP URI ``deployable`` connects with: its own user when this stack manages them."""
        if self.broker_env is None:
            return self.amqp_uri
        user = broker.user(registry.load().deployable(deployable))
        parts = urllib.parse.urlsplit(self.amqp_uri)
        netloc = f"{user}:{self._broker_password(user)}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def environment(self, name: str) -> dict[str, str]:
        if name == MAIL_SINK:      # no broker, no database
            return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
        env = dict(os.environ, AMQP_URI=self.amqp_uri_of(name), MONGODB_URL=self.mongodb_url,
                   METRICS_PORT=str(self.metrics_ports.get(name, 0)), PYTHONUNBUFFERED="1",
                   PYTHONWARNINGS="ignore", **self.auth.environment())
        for key, value in self.sink_environment().items():
            env.setdefault(key, value)     # yours (a real mail server) if you set them
        env.update(self.settings)
        if name == "gateway":
            env["GATEWAY_ADDR"] = self.gateway_addr
        elif self.database_prefix:
            env["MONGODB_DATABASE"] = f"{self.database_prefix}{name}"
        return env

    # -- lifecycle ----------------------------------------------------------------
    def pidfile(self, name: str) -> Path:
        return self.run_dir / "run" / f"{name}.pid"

    def running_pid(self, name: str) -> int | None:
        try:
            pid = int(self.pidfile(name).read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self, name: str) -> None:
        """Start ``name`` (a deployable), or ``name@N``: another replica of a service,
        sharing its queues and database, on a metrics port of its own."""
        deployable, _, replica = name.partition("@")
        self.ensure_broker_users()
        (self.run_dir / "log").mkdir(parents=True, exist_ok=True)
        self.pidfile(name).parent.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / "log" / f"{name}.log", "ab")
        env = self.environment(deployable)
        if replica:
            self.metrics_ports[name] = _free_port()
            env["METRICS_PORT"] = str(self.metrics_ports[name])
        proc = subprocess.Popen(self.command(deployable), cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.pidfile(name).write_text(str(proc.pid))

    def start_replica(self, service: str, n: int = 2, timeout: float = 60) -> str:
        """Another replica of ``service`` (as in a cluster: one queue, two consumers; its
        timers run in both); returns its name for :meth:`stop`."""
        name = f"{service}@{n}"
        self.start(name)
        self.wait_ready(name, timeout)
        return name

    def stop(self, name: str, timeout: float = 15) -> None:
        pid = self.procs[name].pid if name in self.procs else self.running_pid(name)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if name in self.procs:
            self.procs.pop(name).wait()
        self.pidfile(name).unlink(missing_ok=True)
        if "@" in name:   # a replica's port goes with it
            self.metrics_ports.pop(name, None)

    def up(self, names: list[str] | None = None, timeout: float = 60) -> None:
        names = [name for name in names or [MAIL_SINK, *services(), "gateway"] if self.running_pid(name) is None]
        self.check_ports_free(names)
        for name in names:
            self.start(name)
            self.wait_ready(name, timeout)

    def ports_of(self, name: str) -> dict[int, str]:
        """The local ports ``name`` listens on, each with what it is for."""
        if name == MAIL_SINK:
            return {self.mail_ports[0]: "the mail sink's SMTP", self.mail_ports[1]: "the mail sink's HTTP"}
        ports = {self.metrics_ports[name]: f"{name} metrics"} if self.metrics_ports.get(name) else {}
        if name == "gateway":
            host, port = self.gateway_addr.rsplit(":", 1)
            if host in ("127.0.0.1", "localhost", "0.0.0.0", "[::]"):
                ports[int(port)] = "the gateway's gRPC"
        return ports

    def check_ports_free(self, names: list[str]) -> None:
        """Refuses to start when another process (another checkout's stack, say) holds a
        port one of ``names`` would listen on: readiness checks would find that process
        and this stack would talk to it."""
        taken = [f"{port} ({what})" for name in names for port, what in self.ports_of(name).items()
                 if not _port_free(port)]
        if taken:
            raise SystemExit(
                "stack: these ports are in use by another process: " + ", ".join(taken) + ".\n"
                "Stop it first: `make down` in the checkout that started it (`ss -ltnp` names the process).")

    def down(self) -> None:
        replicas = [name for name in self.procs if "@" in name]
        for name in ["gateway", *replicas, *reversed(services()), MAIL_SINK]:
            self.stop(name)

    # -- readiness ----------------------------------------------------------------
    def wait_ready(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.run_dir}/log/{name}.log")
            try:
                if name == MAIL_SINK:
                    socket.create_connection(("127.0.0.1", self.mail_ports[0]), timeout=1).close()
                elif name == "gateway":
                    # listening is not enough: ready means connected to the broker
                    host, port = self.gateway_addr.rsplit(":", 1)
                    socket.create_connection((host, int(port)), timeout=1).close()
                    if self.metrics_ports.get(name):
                        _ready(self.metrics_ports[name])
                elif "@" in name:   # a replica shares its service's queue: a ping proves nothing of it
                    _ready(self.metrics_ports[name])
                else:
                    rpc_ping(self.amqp_uri, name, timeout=2)
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last_error = exc
                time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout}s: {last_error}")


def _ready(port: int) -> None:
    """Raises unless the process's /readyz answers 200 (crm_common.probes)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
        if response.status != 200:
            raise RuntimeError(f"/readyz answered {response.status}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # a port in TIME_WAIT is free
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def rpc_ping(amqp_uri: str, service: str, timeout: float = 2) -> dict:
    return rpc_call(amqp_uri, service, "ping", timeout=timeout)


def rpc_call(amqp_uri: str, service: str, method: str, kwargs: dict | None = None, timeout: float = 2,
             token: str = ""):
    """One nameko-protocol RPC over a short-lived pika connection; ``token``: the internal
    token of the principal to call as (``Stack.internal_token``)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        ch = conn.channel()
        ch.exchange_declare("nameko-rpc", "topic", durable=True)
        reply = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        ch.queue_bind(reply, "nameko-rpc", routing_key=reply)
        cid = str(uuid.uuid4())
        ch.basic_publish("nameko-rpc", f"{service}.{method}", json.dumps({"args": [], "kwargs": kwargs or {}}),
                         pika.BasicProperties(reply_to=reply, correlation_id=cid,
                                              content_type="application/json",
                                              expiration=str(int(timeout * 1000)),
                                              headers={f"nameko.{access.CONTEXT_KEY}": token} if token else None),
                         mandatory=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, props, body = ch.basic_get(reply, auto_ack=True)
            if method and props.correlation_id == cid:
                answer = json.loads(body)
                if answer.get("error"):
                    raise RuntimeError(answer["error"])
                return answer["result"]
            conn.sleep(0.05)
        raise TimeoutError(f"{service}.{method}: no answer")
    finally:
        conn.close()


BANNER = """
The CRM is up. gRPC gateway: {addr}  (health + reflection on)
Metrics: {metrics}
Mail and SMS the CRM sent: make mail (N=<n> shows one, SMS=1 the text messages)
Logs: var/log/*.log   Stop: make down

Every call needs a token; `make token ROLE=<role>` prints one (roles: docs/access.md).
Try (make grpcurl builds grpcurl into tools/bin once):
  TOKEN=$(make -s token ROLE=admin)
  tools/bin/grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"text": "sara"}}' {addr} crm.v1.ContactsService/SearchContacts
"""


def main(argv: list[str]) -> int:
    stack = Stack()
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "up":
        stack.up()
    elif cmd == "banner":
        metrics = ", ".join(f"{name} :{port}/metrics" for name, port in stack.metrics_ports.items())
        print(BANNER.format(addr=stack.gateway_addr, metrics=metrics))
    elif cmd == "down":
        stack.down()
    elif cmd == "run" and len(argv) > 2:   # one process in the foreground, with the stack's environment
        name = argv[2]
        registry.load().deployable(name)
        command = stack.command(name)
        stack.ensure_broker_users()
        os.execve(command[0], command, stack.environment(name))
    elif cmd == "status":
        for name in [MAIL_SINK, *services(), "gateway"]:
            pid = stack.running_pid(name)
            print(f"{name:10s} {'running (pid %d)' % pid if pid else 'stopped'}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
