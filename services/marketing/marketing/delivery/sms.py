"""SMS delivery through a provider's HTTP API: the adapter posts JSON
``{"to", "from", "text", "reference"}`` to ``MARKETING_SMS_URL`` with
``Authorization: Bearer <MARKETING_SMS_TOKEN>`` (both Secrets in a cluster); locally the
sink `make up` starts answers it (``http://127.0.0.1:8026/sms``). A provider with another
API gets an adapter with the same ``send``.

2xx: accepted. 429, 5xx, a timeout or no connection: transient (retried with backoff by
the caller). Any other 4xx: permanent (the provider refuses the number or the text).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from . import Permanent, Transient


class SmsProvider:
    def __init__(self, url: str, token: str = "", sender: str = "", timeout: float = 30):
        if not url.startswith(("http://", "https://")):
            raise ValueError("MARKETING_SMS_URL must be an http(s) URL")
        self.url, self.token, self.sender, self.timeout = url, token, sender, timeout

    def send(self, *, to: str, text: str, reference: str) -> None:
        body = json.dumps({"to": to, "from": self.sender, "text": text, "reference": reference}).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = f"{exc.code} {exc.read(500).decode(errors='replace')}".strip()
            if exc.code == 429 or exc.code >= 500:
                raise Transient(detail) from None
            raise Permanent(detail) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Transient(f"cannot reach the SMS provider: {exc}") from None
