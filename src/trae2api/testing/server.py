"""Running the simulated upstream: in a background thread for tests, or on a caller's event loop.

It owns sockets, threads and the admin client; it must not contain protocol rules.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from trae2api.testing.state import SimState
from trae2api.testing.tokens import SimAccount
from trae2api.testing.upstream import create_upstream_app

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket (port 0 picks a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def make_server(state: SimState, host: str = "127.0.0.1", port: int = 0) -> uvicorn.Server:
    """A uvicorn server for the simulated upstream (quiet, no lifespan, no websockets)."""
    config = uvicorn.Config(
        create_upstream_app(state),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


async def serve_simulated_trae(
    host: str = "127.0.0.1", port: int = 18080, state: SimState | None = None
) -> None:
    """Serve the simulated upstream on the running loop until the task is cancelled or
    the process is signalled (``trae2api serve --demo`` runs it beside the gateway)."""
    server = make_server(state or SimState(), host, port)
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True  # shut down cleanly (about a second at most), then stop
        await task
        raise


class SimControl:
    """A thin synchronous client of the admin API under ``/_sim/``."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=10.0)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._client.request(method, f"/_sim/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def account(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "account")
        return result

    def last_chat(self) -> dict[str, Any]:
        """``{"headers": {...}, "body": ..., "dialect": ...}`` of the last chat of either dialect;
        headers and body None before the first chat."""
        result: dict[str, Any] = self._call("GET", "last_chat")
        return result

    def last_agent_chat(self) -> dict[str, Any]:
        """Like ``last_chat``, for the last agent-dialect (``llm_utils_chat``) chat only."""
        result: dict[str, Any] = self._call("GET", "last_agent_chat")
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """See ``SimState.configure``; returns the stats after the change."""
        result: dict[str, Any] = self._call("POST", "config", changes)
        return result

    def expire_access(self) -> None:
        self._call("POST", "expire_access")

    def expire_upload_credentials(self) -> None:
        """Every ImageX upload credential issued so far expires now."""
        self._call("POST", "expire_upload_credentials")

    def images(self) -> list[dict[str, Any]]:
        """The committed images: ``{uri, width, height, format, md5, sha256, size}``."""
        result: list[dict[str, Any]] = self._call("GET", "images")["images"]
        return result

    def script(self, events: list[dict[str, Any]]) -> None:
        """Answer the next valid chat with exactly these ``{event, data, delay?, raw?}``."""
        self._call("POST", "script", events)

    def fault(self, fault: str, *, target: str = "chat", times: int = 1) -> list[Any]:
        """Queue a directive-free fault (see ``trae2api.testing.faults``); the pending list."""
        body = {"target": target, "fault": fault, "times": times}
        result: list[Any] = self._call("POST", "fault", body)["faults"]
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "fault")

    def reset(self) -> dict[str, Any]:
        """Everything back to the initial state (see ``SimState.reset``)."""
        result: dict[str, Any] = self._call("POST", "reset")
        return result

    def reset_counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "reset_counters")
        return result

    def close(self) -> None:
        self._client.close()


class SimulatedTrae:
    """The simulated upstream on a free loopback port in a daemon thread.

    Use as ``with SimulatedTrae() as sim: ...`` or ``start()``/``stop()``; ``url`` serves as
    ``BASE_URL``, ``REFRESH_TOKEN_URL``, ``GET_FILE_ID_URL`` (ImageX) and ``UPLOAD_FILE_URL``
    (TOS) alike.
    """

    def __init__(self, state: SimState | None = None, *, host: str = "127.0.0.1") -> None:
        self.state = state or SimState()
        self._host = host
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._control: SimControl | None = None
        self._port = 0

    @property
    def account(self) -> SimAccount:
        """The initial credentials (its refresh token is valid until first exchanged)."""
        return self.state.account

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("SimulatedTrae is not running; call start() first")
        return f"http://{self._host}:{self._port}"

    @property
    def control(self) -> SimControl:
        if self._control is None:
            raise RuntimeError("SimulatedTrae is not running; call start() first")
        return self._control

    def start(self) -> SimulatedTrae:
        if self._server is not None:
            return self
        self._socket = bind_socket(self._host, 0)
        self._port = self._socket.getsockname()[1]
        self._server = make_server(self.state, self._host, self._port)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"simulated-trae-{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulated Trae upstream did not start")
            time.sleep(0.01)
        self._control = SimControl(self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if self._control is not None:
            self._control.close()  # first, so that no idle connection delays the shutdown
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STOP_TIMEOUT)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = self._control = None

    def __enter__(self) -> SimulatedTrae:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
