"""``crm-service NAME``: run one CRM nameko service, the same way on a laptop and in
its container image.

Each service package declares itself in the ``crm.services`` entry-point group
(``contacts = "contacts.service:ContactsService"``), so one image recipe and one
Makefile rule serve them all. ``CRM_SERVICE`` may stand in for NAME (images set it
at build time); ``CRM_CONFIG`` overrides the config file (default
``services/NAME/config.yaml`` from the working directory). The launcher *execs*
``nameko run``: the service is the process itself, so SIGTERM reaches nameko, which
stops taking work and lets in-flight workers finish.
"""
from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "crm.services"


def services() -> dict[str, str]:
    """NAME -> ``module:Class`` of every installed CRM service."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def nameko_command(name: str, config: str | None = None) -> list[str]:
    known = services()
    if name not in known:
        raise SystemExit(f"crm-service: unknown service {name!r}; installed: {', '.join(sorted(known)) or 'none'}")
    config = config or os.environ.get("CRM_CONFIG") or f"services/{name}/config.yaml"
    beside_python = Path(sys.executable).with_name("nameko")
    nameko = str(beside_python) if beside_python.exists() else shutil.which("nameko") or "nameko"
    return [nameko, "run", "--config", config, known[name]]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    name = args[0] if args else os.environ.get("CRM_SERVICE", "")
    if not name:
        raise SystemExit("usage: crm-service NAME   (or set CRM_SERVICE)")
    command = nameko_command(name)
    os.execv(command[0], command)
