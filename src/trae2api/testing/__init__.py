"""A simulated Trae upstream that enforces protocol §2–§8 (images included) and the agent dialect
strictly, for tests and ``--demo``.

Nothing in the gateway may import this package at run time except the ``--demo`` switch.
"""

from trae2api.testing.server import SimControl, SimulatedTrae, serve_simulated_trae
from trae2api.testing.state import SimState
from trae2api.testing.tokens import SimAccount
from trae2api.testing.upstream import create_upstream_app

__all__ = [
    "SimAccount",
    "SimControl",
    "SimState",
    "SimulatedTrae",
    "create_upstream_app",
    "serve_simulated_trae",
]
