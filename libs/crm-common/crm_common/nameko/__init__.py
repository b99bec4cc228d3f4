"""nameko building blocks: MongoDB dependency, outbox event publishing, idempotent
event handlers, metrics and call-id logging. Importing this imports nameko.

Run services as ``nameko run pkg.service:TheService``: a bare module path makes
nameko pick up every class with entrypoints it finds there, the nameless
:class:`~crm_common.nameko.base.CrmService` included.
"""
from nameko.exceptions import deserialize_to_instance

from ..errors import ERROR_TYPES

# Internal RPC callers (ClusterRpcProxy, services calling services) get our typed
# errors back as the same classes instead of nameko's generic RemoteError.
for _cls in ERROR_TYPES.values():
    deserialize_to_instance(_cls)
