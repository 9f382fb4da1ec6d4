"""Liveness, readiness and the status page; none of them may show a secret."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from trae2api import __version__
from trae2api.errors import ApiError
from trae2api.faces.http_responses import ORJSONResponse
from trae2api.faces.runtime import RuntimeDep, ServicesDep, authenticate

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process serves HTTP")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: credentials valid and Trae answered recently")
async def readyz(deps: ServicesDep, runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    checks: dict[str, Any] = {"credentials": deps.account.state}
    if deps.account.state == "reauth_required":
        return ORJSONResponse({"status": "not_ready", **checks}, status_code=503)
    # Dialect §7: an empty model table is looked at again, it may have been fixed upstream.
    if not deps.health.answered_within(settings.ready_window) or deps.catalog.problem:
        try:
            await deps.probe()
        except ApiError as exc:
            checks["upstream"] = exc.message
            return ORJSONResponse({"status": "not_ready", **checks}, status_code=503)
    if deps.catalog.problem:
        checks["upstream"] = deps.catalog.problem
        return ORJSONResponse({"status": "not_ready", **checks}, status_code=503)
    checks["upstream"] = "ok"
    return ORJSONResponse({"status": "ready", **checks})


@router.get("/status", summary="What the gateway knows about its account (no secrets)")
async def status(
    deps: ServicesDep, runtime: RuntimeDep, _client: Annotated[str, Depends(authenticate)]
) -> Any:
    settings = runtime.settings
    choice = deps.dialect.describe()
    return {
        "version": __version__,
        "dialect": choice["dialect"],
        # UPSTREAM_DIALECT, the dialect in use, its host and why (selector.py).
        "dialect_choice": choice,
        "base_url": settings.base_url,
        "model_table": deps.catalog.problem or "ok",
        "account": deps.account.status(),
        "upstream": deps.health.summary(),
        "credits": deps.credits.status() if deps.credits else None,  # GATE-B (issue 10)
        # A count only (the fault suite's leak check reads it): tasks alive in this process.
        "runtime": {"asyncio_tasks": len(asyncio.all_tasks())},
    }
