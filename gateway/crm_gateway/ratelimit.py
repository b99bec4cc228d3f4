"""Per-principal rate limits: a token bucket per caller, in each gateway replica.

A role may set its own ``rate = [per_second, burst]`` in crm_common/access.toml (machine
clients need more than people); everyone else gets ``GATEWAY_RATE_PER_SECOND`` and
``GATEWAY_RATE_BURST``. Beyond it: RESOURCE_EXHAUSTED with the seconds to wait (a
google.rpc.RetryInfo detail and the message). With N replicas a caller gets up to N times
the rate; the limit protects the CRM from one runaway client, it is not a quota.
"""
from __future__ import annotations

import time

from crm_common.access import Policy, Principal
from crm_common.errors import ResourceExhausted

_MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, policy: Policy, per_second: float, burst: float):
        self.policy = policy
        self.default = (float(per_second), float(burst))
        self._buckets: dict[str, list[float]] = {}   # subject -> [tokens, last refill]

    def limits(self, principal: Principal) -> tuple[float, float]:
        rates = [self.policy.roles[r].rate for r in principal.roles if r in self.policy.roles]
        return max((r for r in rates if r), default=self.default)

    def take(self, principal: Principal) -> None:
        if self.default[0] <= 0:
            return
        rate, burst = self.limits(principal)
        now = time.monotonic()
        bucket = self._buckets.get(principal.subject)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[principal.subject] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            wait = (1 - tokens) / rate
            raise ResourceExhausted(f"rate limit of {rate:g} calls/s (burst {burst:g}) for {principal.subject} "
                                    f"reached: retry in {wait:.2f} s", {"retry_after_seconds": round(wait, 3)})
        bucket[0] = tokens - 1
