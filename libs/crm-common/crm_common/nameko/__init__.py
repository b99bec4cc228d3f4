"""nameko building blocks: MongoDB dependency, outbox event publishing, idempotent
event handlers, metrics and call-id logging. Importing this imports nameko."""
