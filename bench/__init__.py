"""The CRM's benchmark (``make bench``): how fast each path is against the floor of the
transports it rides on, measured in the same run. Not a test; see bench/README.md."""
