"""``python -m trae2api.testing``: run the simulated upstream alone and print its credentials.

It prints only the simulator's own fake account (``KEY=value`` lines); it must not touch real ones.
"""

from __future__ import annotations

import argparse
import sys

from trae2api.testing.agent_catalog import TABLE_CODE_FLOOR
from trae2api.testing.server import bind_socket, make_server
from trae2api.testing.state import LEGACY_CHAT_MODES, SimState
from trae2api.testing.tokens import DEFAULT_ACCESS_TTL, DEFAULT_REFRESH_TTL


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trae2api.testing", description="Run the simulated Trae upstream."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080, help="0 picks a free port")
    parser.add_argument("--access-ttl", type=float, default=DEFAULT_ACCESS_TTL, metavar="S")
    parser.add_argument("--refresh-ttl", type=float, default=DEFAULT_REFRESH_TTL, metavar="S")
    parser.add_argument("--refresh-token", default=None, help="initial refresh token")
    parser.add_argument("--exchange-delay", type=float, default=0.0, metavar="S")
    parser.add_argument(
        "--ide-credits", type=int, default=None, metavar="N", help="initial ide_credits balance"
    )
    parser.add_argument(
        "--no-agent-endpoints",
        action="store_true",
        help="get_detail_param and llm_utils_chat answer 404 (a legacy-only host)",
    )
    parser.add_argument(
        "--legacy-chat",
        choices=LEGACY_CHAT_MODES,
        default="ok",
        help="busy: /api/ide/v1/chat answers 3003; dying: 4023 for current names, else 3003",
    )
    parser.add_argument(
        "--table-code-floor",
        type=int,
        default=TABLE_CODE_FLOOR,
        metavar="YYYYMMDD",
        help="the lowest x-ide-version-code that selects the agent model table",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Bind, print ``KEY=value`` lines, then serve until interrupted."""
    args = _parse(argv)
    state = SimState(
        refresh_token=args.refresh_token,
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        ide_credits=args.ide_credits,
        agent_endpoints=not args.no_agent_endpoints,
        legacy_chat=args.legacy_chat,
        table_code_floor=args.table_code_floor,
    )
    state.configure(exchange_delay=args.exchange_delay)
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    url = f"http://{args.host}:{port}"
    account = state.account
    lines = {
        "APP_ID": account.app_id,
        "CLIENT_ID": account.client_id,
        "USER_ID": account.user_id,
        "REFRESH_TOKEN": account.refresh_token,
        "BASE_URL": url,
        "REFRESH_TOKEN_URL": url,
    }
    sys.stdout.write("".join(f"{key}={value}\n" for key, value in lines.items()))
    sys.stdout.flush()
    try:
        make_server(state, args.host, port).run(sockets=[sock])
    finally:
        sock.close()


if __name__ == "__main__":
    main()
