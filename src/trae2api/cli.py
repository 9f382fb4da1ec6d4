"""The ``trae2api`` command: ``serve`` (optionally ``--demo`` or ``--supervise``) and ``version``.

It turns configuration errors into one readable line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import structlog
import uvicorn

from trae2api import __version__
from trae2api.api.keys import reload_keys
from trae2api.app import create_app
from trae2api.config import Settings, load_settings, require_account, require_safe_bind
from trae2api.errors import ConfigError
from trae2api.log import configure_logging
from trae2api.shutdown import Drain
from trae2api.supervisor import MARKER

EXIT_CONFIG = 2
log = structlog.get_logger("trae2api")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trae2api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
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
    """Become ``python -m trae2api.supervisor`` running this same ``serve`` as its child."""
    serve_args = argv[argv.index("serve") + 1 :]
    # argparse takes any unambiguous prefix (`--sup`); the child would not supervise again
    # anyway (MARKER), but its command line stays what the operator meant.
    serve_args = [arg for arg in serve_args if not (len(arg) > 2 and "--supervise".startswith(arg))]
    gateway = [sys.executable, "-m", "trae2api", "serve", *serve_args]
    # exec, not a call: the pid stays (PID 1 stays PID 1) but the gateway's modules, already
    # imported here, are dropped; the supervisor is resident for the container's whole life.
    supervisor = [sys.executable, "-m", "trae2api.supervisor", *gateway]
    os.execv(sys.executable, supervisor)  # noqa: S606 (our own interpreter and module)


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.demo:
        return _serve_demo(args, overrides)
    settings = load_settings(args.env_file, **overrides)
    require_account(settings)
    require_safe_bind(settings, insecure_no_auth=args.insecure_no_auth)
    _check_data_dir(settings.data_dir)
    configure_logging(settings.log_level, settings.log_format)
    _run(_run_servers(settings))
    return 0


def _serve_demo(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    # Imported here: the simulated upstream is only needed for the demo.
    from trae2api.testing.server import bind_socket, make_server
    from trae2api.testing.state import SimState

    # Today's Trae (dialect §7): the agent dialect answers, the legacy chat is dying.
    state = SimState(legacy_chat="dying")
    sock = bind_socket("127.0.0.1", 0)
    sim_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    account = state.account
    data_dir = Path(tempfile.mkdtemp(prefix="trae2api-demo-"))
    settings = load_settings(
        args.env_file,
        **{
            "app_id": account.app_id,
            "client_id": account.client_id,
            "user_id": account.user_id,
            "refresh_token": account.refresh_token,
            "base_url": sim_url,
            "agent_base_url": sim_url,
            "refresh_token_url": sim_url,
            "get_file_id_url": sim_url,
            "upload_file_url": sim_url,
            "data_dir": data_dir,
            **overrides,
        },
    )
    require_safe_bind(settings, insecure_no_auth=args.insecure_no_auth)
    # Built before logging is configured: uvicorn's own config would replace our handlers.
    simulator = make_server(state)
    configure_logging(settings.log_level, settings.log_format)
    log.info(
        "demo_mode",
        simulated_upstream=sim_url,
        data_dir=str(data_dir),
        try_it=f"OpenAI(base_url='http://{settings.host}:{settings.port}/v1', api_key='demo')",
    )
    _run(_run_servers(settings, simulator.serve(sockets=[sock])))
    return 0


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
    loop.add_signal_handler(signal.SIGHUP, reload_keys, app.state, settings)


async def _run_servers(settings: Settings, *extra: Any) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="trae2api.api.http_protocol:EnvelopeHttpToolsProtocol",  # 400s as envelopes
        ws="none",
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        server_header=False,
        # Longer than clients' idle pools (httpx and the openai SDK keep 5 s): the client, not
        # the server, closes an idle connection, so a request never meets a closing socket.
        timeout_keep_alive=65,
        # Streams are ended in-band at SHUTDOWN_GRACE; uvicorn cancels what is left later.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace) + 5,
    )
    server = _DrainingServer(config, app.state.drain)
    _signals(app, settings)
    tasks = [asyncio.ensure_future(job) for job in extra]
    try:
        await server.serve()
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
