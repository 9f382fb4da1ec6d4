"""The supervisor: runs the gateway as a child, passes signals on and reaps every orphan.

It exits only once no descendant is left, so a rotation process outlives the gateway even where
the supervisor is PID 1 (a container). It must import nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

# Set in the gateway's environment: a gateway that is PID 1 of nothing still must not supervise
# itself again (``serve`` checks it).
MARKER = "TRAE2API_SUPERVISED"
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,  # reloads API_KEYS_FILE in the gateway
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


class _Forwarder:
    """A signal handler that passes signals to the gateway while it is unreaped."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.started = False
        self.early: list[int] = []

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.pid is not None:
            # An unreaped child (alive or a zombie) cannot be missing; PID 1 must not die of it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
        elif not self.started:
            self.early.append(signum)  # e.g. `docker stop` before the gateway exists

    def attach(self, pid: int) -> None:
        self.pid, self.started = pid, True
        for signum in self.early:
            os.kill(pid, signum)
        self.early.clear()

    def detach(self) -> None:
        # Before the reap: once reaped, the pid may be reused by an unrelated process.
        self.pid = None


def supervise(argv: list[str]) -> int:
    """Run ``argv`` (the gateway) and return its exit status once no descendant is left."""
    _become_subreaper()
    forwarder = _Forwarder()
    previous = {sig: signal.signal(sig, forwarder) for sig in FORWARDED}
    try:
        gateway = subprocess.Popen(  # noqa: S603 (the command line `serve` was given)
            argv,
            env={**os.environ, MARKER: "1"},
            # Its own process group: a terminal's Ctrl-C reaches us and is forwarded once. Twice
            # (terminal and forwarded) would make uvicorn skip the graceful drain.
            process_group=0,
        )
        forwarder.attach(gateway.pid)
        _reap_all(gateway, forwarder)
        return _shell_status(gateway.returncode)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reap_all(gateway: subprocess.Popen[bytes], forwarder: _Forwarder) -> None:
    # Orphans (rotation processes whose gateway died) are re-parented to us; waiting for every
    # child until there is none leaves no zombie and keeps PID 1 alive while one still writes.
    while True:
        try:
            # WNOWAIT: look without reaping, so the forwarder is detached while the pid is still
            # ours (a signal handler may run between any two bytecodes).
            child = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            return
        if child is None:  # only with WNOHANG
            continue
        if child.si_pid == gateway.pid:
            forwarder.detach()
            gateway.wait()  # reaps it and records its status
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.si_pid, 0)


def _shell_status(returncode: int) -> int:
    # A signal death is -signum in Popen and 128+signum in shells (and in `docker ps`).
    return 128 - returncode if returncode < 0 else returncode


def _become_subreaper() -> None:
    # Without it, a rotation process orphaned by the gateway's death goes to init, and we would
    # exit before it has stored the token. PID 1 reaps orphans anyway.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0
        reason = os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # not Linux: no prctl
        failed, reason = True, str(exc)
    if failed and os.getpid() != 1:
        print(
            f"trae2api: warning: cannot become a child subreaper ({reason}); a credential "
            "rotation may still be running when the supervisor exits",
            file=sys.stderr,
        )


if __name__ == "__main__":
    # `serve` execs `python -m trae2api.process.supervisor GATEWAY-ARGV...` (cli._exec_supervisor).
    raise SystemExit(supervise(sys.argv[1:]))
