"""``GET /v1/models`` and ``GET /v1/models/{id}`` in OpenAI's shape, from the catalogue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from trae2api.errors import NotFound
from trae2api.faces.runtime import ServicesDep, authenticate

router = APIRouter(dependencies=[Depends(authenticate)])


@router.get("/v1/models", summary="List models")
@router.get("/models", include_in_schema=False)
async def list_models(deps: ServicesDep) -> dict[str, Any]:
    entries = await deps.catalog.entries()
    return {"object": "list", "data": [entry.openai() for entry in entries]}


@router.get("/v1/models/{model_id:path}", summary="Retrieve a model")
async def get_model(model_id: Annotated[str, "model id or alias"], deps: ServicesDep) -> Any:
    entry = await deps.catalog.find(model_id)
    if entry is None:
        raise NotFound(
            f"The model '{model_id}' does not exist on this Trae account; GET /v1/models lists "
            f"the ones it has",
            param="model",
            code="model_not_found",
        )
    return entry.openai(model_id)
