"""``crm-service NAME``: run one CRM nameko service, the same way on a laptop and in
its container image.

The service is found in the registry (crm_common.registry: ``module = "pkg.service:Class"``)
and its nameko config is built by crm_common.config.service_config from the environment
and the registry's defaults: there is no config file to keep in step. ``CRM_SERVICE``
may stand in for NAME (images set it). The process monkey-patches eventlet first, then
runs the service with nameko's own runner, which stops taking work on SIGTERM and lets
in-flight workers finish.
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    name = args[0] if args else os.environ.get("CRM_SERVICE", "")
    if not name:
        raise SystemExit("usage: crm-service NAME   (or set CRM_SERVICE)")

    from . import registry  # pure Python: safe before the monkey patch

    try:
        service = registry.load().service(name)
    except KeyError as exc:
        raise SystemExit(f"crm-service: {exc.args[0]}") from None

    import eventlet
    eventlet.monkey_patch()  # before anything imports socket or threading users

    import importlib
    import logging.config

    from nameko.cli.run import run

    from . import config

    settings = config.service_config(name)
    logging.config.dictConfig(settings["LOGGING"])
    module, _, cls = service.module.partition(":")
    run([getattr(importlib.import_module(module), cls)], settings)


if __name__ == "__main__":
    main()
