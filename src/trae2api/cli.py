"""The ``trae2api`` command: ``serve`` (optionally ``--demo`` or ``--supervise``) and ``version``.

It turns configuration errors (a busy port included) into one readable line and exit status 2,
never a traceback; the listening socket is bound before any start-up work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import structlog
import uvicorn

from trae2api import __version__
from trae2api.app import create_app
from trae2api.config import Settings, load_settings, require_safe_bind
from trae2api.errors import ConfigError
from trae2api.faces.keys import reload_keys
from trae2api.log import configure_logging
from trae2api.process.shutdown import Drain
from trae2api.process.supervisor import MARKER

EXIT_CONFIG = 2
log = structlog.get_logger("trae2api")


_DESCRIPTION = "Use the models of your own Trae IDE account from any OpenAI-compatible client."
_EPILOG = """\
examples:
  trae2api serve --demo   try it without a Trae account (a simulated Trae answers)
  trae2api serve          serve your account, configured in .env or the environment
  trae2api serve --help   the options of serve

The account (CLIENT_ID, REFRESH_TOKEN, USER_ID; APP_ID on the legacy dialect) and every other
setting are read from the environment and from .env in the current directory; .env.example
explains each variable.
The server keeps running until Ctrl-C: use a second terminal for your clients.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trae2api",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,version}")
    serve = commands.add_parser(
        "serve",
        help="run the gateway (it keeps running until Ctrl-C)",
        description="Run the gateway on http://HOST:PORT/v1 until Ctrl-C or SIGTERM.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to listen on (overrides HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides PORT)")
    serve.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="run against the bundled simulated Trae upstream: no Trae account needed",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback HOST without AUTH_TOKEN (anyone who can reach it can use it)",
    )
    serve.add_argument(
        "--supervise",
        action="store_true",
        help="run the gateway as a child and exit only after any credential rotation it started "
        "has finished; automatic when running as PID 1, e.g. in a container",
    )
    commands.add_parser("version", help="print the version")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if (args.supervise or os.getpid() == 1) and not os.environ.get(MARKER):
        _exec_supervisor(argv)
    try:
        return _serve(args)
    except ConfigError as exc:
        print(f"trae2api: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0


def _exec_supervisor(argv: list[str]) -> NoReturn:
    """Become ``python -m trae2api.process.supervisor`` running this same ``serve`` as its child."""
    serve_args = argv[argv.index("serve") + 1 :]
    # argparse takes any unambiguous prefix (`--sup`); the child would not supervise again
    # anyway (MARKER), but its command line stays what the operator meant.
    serve_args = [arg for arg in serve_args if not (len(arg) > 2 and "--supervise".startswith(arg))]
    gateway = [sys.executable, "-m", "trae2api", "serve", *serve_args]
    # exec, not a call: the pid stays (PID 1 stays PID 1) but the gateway's modules, already
    # imported here, are dropped; the supervisor is resident for the container's whole life.
    supervisor = [sys.executable, "-m", "trae2api.process.supervisor", *gateway]
    os.execv(sys.executable, supervisor)  # noqa: S606 (our own interpreter and module)


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.demo:
        return _serve_demo(args, overrides)
    settings = load_settings(args.env_file, account=True, **overrides)
    require_safe_bind(settings, insecure_no_auth=args.insecure_no_auth)
    _check_data_dir(settings.data_dir)
    sockets = listen(settings.host, settings.port)
    configure_logging(settings.log_level, settings.log_format)
    log.info("listening", url=_client_url(sockets, "/v1"))
    _run(_run_servers(settings, sockets))
    return 0


def _serve_demo(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    # Imported here: the simulated upstream is only needed for the demo.
    from trae2api.testing.server import bind_socket, make_server
    from trae2api.testing.state import SimState

    # Today's Trae (dialect §7): the agent dialect answers, the legacy chat is dying.
    state = SimState(legacy_chat="dying")
    sim_sock = bind_socket("127.0.0.1", 0)
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
    account = state.account
    demo_values: dict[str, Any] = {
        "app_id": account.app_id,
        "client_id": account.client_id,
        "user_id": account.user_id,
        "refresh_token": account.refresh_token,
        "base_url": sim_url,
        "agent_base_url": sim_url,
        "refresh_token_url": sim_url,
        "get_file_id_url": sim_url,
        "upload_file_url": sim_url,
    }
    settings = load_settings(args.env_file, **demo_values, **overrides)
    if settings.upstream_dialect == "legacy":
        state.configure(legacy_chat="ok")  # a forced legacy demo shows the legacy dialect working
    require_safe_bind(settings, insecure_no_auth=args.insecure_no_auth)
    sockets = listen(settings.host, settings.port)
    # Removed on every way out: normal exit, Ctrl-C and SIGTERM (both end uvicorn's serve).
    with tempfile.TemporaryDirectory(prefix="trae2api-demo-", ignore_cleanup_errors=True) as tmp:
        settings = settings.model_copy(update={"data_dir": Path(tmp)})
        # Built before logging is configured: uvicorn's own config would replace our handlers.
        simulator = make_server(state)
        configure_logging(settings.log_level, settings.log_format)
        logging.getLogger("uvicorn.error").addFilter(_QuietSimulator())
        log.info(
            "demo_mode",
            simulated_upstream=sim_url,
            data_dir=tmp,
            try_it=f"OpenAI(base_url='{_client_url(sockets, '/v1')}', api_key='demo')",
        )
        _run(_run_servers(settings, sockets, simulator.serve(sockets=[sim_sock])))
    return 0


_SIMULATOR_TASK = "trae2api-simulated-upstream"


class _QuietSimulator(logging.Filter):
    """Drops uvicorn's info lines from the demo's simulated upstream (it runs in its own task).

    Both servers log through uvicorn's one logger; only the gateway's lines tell the user
    anything ("Started server process" once). Warnings and errors still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop in this thread
            return True
        return task is None or task.get_name() != _SIMULATOR_TASK


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for HOST:PORT (every address HOST names), or a one-line ConfigError."""
    try:
        addresses = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        reason = f"{host} is not an address of this machine ({exc.strerror})."
        raise ConfigError("HOST", reason) from None
    sockets: list[socket.socket] = []
    unavailable: OSError | None = None
    with _closed_on_error(sockets):
        for family, kind, proto, _name, address in dict.fromkeys(addresses):
            try:
                sockets.append(_bound(family, kind, proto, address))
            except OSError as exc:
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    raise _bind_error(host, port, exc) from None
                unavailable = exc  # e.g. ::1 for "localhost" where IPv6 is off
        if not sockets:
            assert unavailable is not None  # getaddrinfo never answers with no address
            raise _bind_error(host, port, unavailable)
    return sockets


def _bound(family: int, kind: int, proto: int, address: Any) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        # Listening at once holds the port (Linux lets a second SO_REUSEADDR socket bind a
        # port nobody listens on); clients that connect before start-up ends wait in the queue.
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def _closed_on_error(sockets: list[socket.socket]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for sock in sockets:
            sock.close()
        raise


def _bind_error(host: str, port: int, exc: OSError) -> ConfigError:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            "PORT",
            f"{where} is already in use (another trae2api, or another program, listens there). "
            "Stop it, or choose another port: PORT=<port> in .env or trae2api serve --port <port>.",
        )
    if exc.errno == errno.EACCES:
        return ConfigError(
            "PORT", f"listening on {where} is not permitted; choose a port above 1023."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            "HOST",
            f"{host} is not an address of this machine; use 127.0.0.1 (this machine only) "
            f"or 0.0.0.0 (every interface).",
        )
    return ConfigError("HOST", f"cannot listen on {where}: {exc.strerror}.")


def _client_url(sockets: list[socket.socket], path: str = "") -> str:
    """Where a client on this machine reaches the first bound socket."""
    host, port = sockets[0].getsockname()[:2]
    if ipaddress.ip_address(host).is_unspecified:
        host = "127.0.0.1" if sockets[0].family == socket.AF_INET else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is Linux/macOS only; asyncio's loop works everywhere
        asyncio.run(main)
    else:
        uvloop.run(main)


class _DrainingServer(uvicorn.Server):
    """uvicorn's server that also starts the app's SHUTDOWN_GRACE on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.drain.begin()


def _signals(app: Any, settings: Settings) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    # uvicorn raises SIGTERM again once it has shut down; by then that must not kill us with
    # status -15: a clean drain exits 0.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload_keys, app.state.runtime, settings)


async def _run_servers(
    settings: Settings,
    sockets: list[socket.socket],
    simulator: Coroutine[Any, Any, None] | None = None,
) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="trae2api.faces.http_protocol:EnvelopeHttpToolsProtocol",  # 400s as envelopes
        ws="none",
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        server_header=False,
        # Nothing here reads the client's address (keys name clients), so no X-Forwarded-*
        # rewriting layer on every request.
        proxy_headers=False,
        # Longer than clients' idle pools (httpx and the openai SDK keep 5 s): the client, not
        # the server, closes an idle connection, so a request never meets a closing socket.
        timeout_keep_alive=65,
        # Streams are ended in-band at SHUTDOWN_GRACE; uvicorn cancels what is left later.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace) + 5,
    )
    server = _DrainingServer(config, app.state.runtime.drain)
    _signals(app, settings)
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(simulator, name=_SIMULATOR_TASK)] if simulator else []
    try:
        await server.serve(sockets=sockets)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    if not server.started:
        raise SystemExit(1)


def _check_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError("DATA_DIR", f"cannot create {data_dir}: {exc.strerror}") from None
    if not os.access(data_dir, os.W_OK):
        raise ConfigError(
            "DATA_DIR", f"{data_dir} is not writable; the rotated refresh token is kept there"
        )


if __name__ == "__main__":
    raise SystemExit(main())
