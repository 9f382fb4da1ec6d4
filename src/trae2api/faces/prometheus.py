"""``GET /metrics``: Prometheus text format, without a key (``METRICS_ENABLED=false`` removes it).

It exposes counts, timings and key names only; keep the port private or scrape it through a
proxy if even those should not be public.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from trae2api.faces.runtime import RuntimeDep
from trae2api.status.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)
