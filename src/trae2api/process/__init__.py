"""The processes around the gateway: the supervisor, the detached rotator, graceful shutdown."""
