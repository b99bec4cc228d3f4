"""Delivery adapters: email over SMTP (email.py), SMS through a provider's HTTP API
(sms.py). Both raise :class:`Transient` (retry with backoff) or :class:`Permanent`
(the message bounced)."""


class DeliveryError(Exception):
    permanent = False


class Transient(DeliveryError):
    """Worth retrying: the server is busy, unreachable, or said 4xx."""


class Permanent(DeliveryError):
    """Retrying will not help: the server refused the recipient or the message (5xx)."""

    permanent = True
