"""The account host's credits balance (dialect §7): one HTTP call and a pure parser of its answer.

``POST {exchange host}/trae/api/v2/pay/ide_user_ent_usage`` with ``{"require_usage": true}``;
the answer has no ``code`` envelope on success. It must not retry, schedule or log: the caller
(``status.credits.poll_balance``) decides what a failure means (nothing, beyond one log line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from trae2api.auth.account import Account
from trae2api.errors import UpstreamUnavailable, from_business_code
from trae2api.upstream.client import business_code
from trae2api.upstream.transport import mapped_transport_errors

BALANCE_PATH = "/trae/api/v2/pay/ide_user_ent_usage"
# Dialect §7 hosts: the CN exchange moved to api.trae.com.cn, the credit endpoints were seen on
# api.trae.cn; the balance is asked of each in turn until one answers.
_ALSO_ASK = {"api.trae.com.cn": "https://api.trae.cn"}


def balance_hosts(exchange_urls: str) -> list[str]:
    """Where to ask for the balance: REFRESH_TOKEN_URL's hosts (one or a comma list) in order,
    each followed by its known sibling."""
    hosts: list[str] = []
    for url in (part.strip().rstrip("/") for part in exchange_urls.split(",")):
        for host in (url, _ALSO_ASK.get(httpx.URL(url).host)) if url else ():
            if host and host not in hosts:
                hosts.append(host)
    return hosts


def parse_balance(payload: Any) -> float | None:
    """Credits left: the sum over ``user_entitlement_pack_list`` of ``entitlement_base_info.
    quota.credits_limit`` minus ``usage.credits_amount``; None when there is no pack list."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), dict):
        payload = payload["data"]  # a variant wraps the answer in "data"
    packs = payload.get("user_entitlement_pack_list") if isinstance(payload, dict) else None
    if not isinstance(packs, list):
        return None
    remaining = 0.0
    for pack in packs:
        if not isinstance(pack, dict):
            continue
        limit = _number(_path(pack, "entitlement_base_info", "quota", "credits_limit"))
        used = _number(_path(pack, "usage", "credits_amount"))
        remaining += limit - used
    return remaining


class BalanceClient:
    """Asks the account host(s) for the credits left, authenticated like the other calls."""

    def __init__(
        self, http: httpx.AsyncClient, account: Account, *, hosts: Sequence[str], ide_version: str
    ) -> None:
        self._http = http
        self._account = account
        self._hosts = list(hosts)
        self._ide_version = ide_version

    async def remaining(self) -> float:
        """The balance from the first host that gives one; raises the last failure otherwise."""
        failure: Exception = UpstreamUnavailable("no balance host configured")
        for host in self._hosts:
            try:
                return await self._ask(host)
            except UpstreamUnavailable as exc:
                failure = exc
        raise failure

    async def _ask(self, host: str) -> float:
        token = await self._account.access_token()
        headers = {
            # The public record's account-host headers: Cloud-IDE-JWT and Trae's user agent.
            "authorization": f"Cloud-IDE-JWT {token}",
            "x-cloudide-token": token,
            "user-agent": f"Trae/{self._ide_version}",
            "x-device-id": self._account.device.device_id,
            "content-type": "application/json",
            "accept": "application/json",
        }
        with mapped_transport_errors("asking for the credits balance"):
            response = await self._http.post(
                host + BALANCE_PATH, content=b'{"require_usage":true}', headers=headers
            )
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            payload = None
        found = business_code(payload)
        if found:
            raise UpstreamUnavailable(from_business_code(*found).message)
        remaining = parse_balance(payload) if response.status_code == 200 else None
        if remaining is None:
            raise UpstreamUnavailable(
                f"{host} answered the balance query with HTTP {response.status_code} "
                "and no user_entitlement_pack_list"
            )
        return remaining


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    try:
        number = float(value)
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0
