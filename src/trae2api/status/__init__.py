"""What the gateway knows about its own health: readiness and the status page."""
