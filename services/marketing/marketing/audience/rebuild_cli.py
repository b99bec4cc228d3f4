"""Rebuild marketing's audience: ``python -m marketing.audience.rebuild_cli [--reset]``.

Calls the internal RPC ``marketing.rebuild_audience`` page by page until it is done
(audience.rebuild says what each step reads). It runs wherever the services' settings
are: locally beside ``make up`` (``make marketing-rebuild [RESET=1]`` gives it the local
CRM_INTERNAL_SECRET), in a cluster inside a marketing pod (``kubectl -n crm exec deploy/marketing -- python -m
marketing.audience.rebuild_cli --reset``). It calls as the operator ``user:ops-rebuild`` (an
admin), so the audit trail of each producer names who read their records; a step that
fails (a producer not answering) is retried from where it stopped, a second run starts
over (``--reset`` drops the audience first, without it the producers' records are merged
into it).
"""
from __future__ import annotations

import argparse
import sys
import time

from nameko.standalone.rpc import ClusterRpcProxy

from crm_common import access, config

OPERATOR = access.Principal("user:ops-rebuild", ("admin",), kind="user", via="rebuild_cli")
ATTEMPTS = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marketing.audience.rebuild_cli", description=__doc__.split("\n")[0])
    parser.add_argument("--reset", action="store_true", help="drop the audience first (a rebuild from scratch)")
    parser.add_argument("--page-size", type=int, default=200, help="records per call (at most 500)")
    args = parser.parse_args(argv)
    token = access.mint(OPERATOR, config.env("CRM_INTERNAL_SECRET"))
    context = {access.CONTEXT_KEY: token}
    with ClusterRpcProxy({"AMQP_URI": config.amqp_uri()}, timeout=120, context_data=context) as rpc:
        page_token, totals = "", {}
        while True:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    done = rpc.marketing.rebuild_audience(reset=args.reset, page_size=args.page_size,
                                                          page_token=page_token)
                    break
                except Exception as exc:   # noqa: BLE001 - a producer down: say so, retry this page
                    if attempt == ATTEMPTS:
                        raise
                    print(f"  {exc!r}; again in {attempt * 2} s", file=sys.stderr)
                    time.sleep(attempt * 2)
            totals[done["step"]] = totals.get(done["step"], 0) + done["applied"]
            print(f"{done['step']:11s} {totals[done['step']]:>9,}", end="\r" if not done["next_page_token"] else "\n")
            if done["done"]:
                print("\nrebuilt: " + ", ".join(f"{step} {n:,}" for step, n in totals.items()))
                return 0
            page_token = done["next_page_token"]


if __name__ == "__main__":
    sys.exit(main())
